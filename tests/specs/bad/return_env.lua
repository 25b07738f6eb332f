-- expect: return_env.lua: '1' is not available in graph specs (sandbox)
-- A spec that hands its environment back as its graph table: the generator's reads of it hit the
-- environment's refusals outside any spec call, which came out as internal errors (exit 3).
return _ENV
