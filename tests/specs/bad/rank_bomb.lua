-- expect: a tensor of 10000 axes (at most 8)
-- A reshape to 10,000 axes of extent 1 passed every size check and kept the passes after the
-- spec busy for 25 s and 2 GB.
local s = {}
for i = 1, 10000 do s[i] = 1 end
s[10000] = 4
return {
  name = "bad_rank_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = g.reshape(g.exp(g.reshape(v.x, s)), { 4 }) end,
}
