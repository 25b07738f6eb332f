-- expect: attempt to call a nil value (field 'random')
-- The same request must give the same bytes: no random numbers in specs.
local n = 2 + math.random(3)
return {
  name = "bad_random",
  summary = "must fail",
  dims = { { "n", n } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
