-- expect: 'next' is not available in graph specs
-- next walks a table in hash order, which varies between runs (pairs visits keys sorted).
local k = next({ alpha = 1, beta = 2 })
return {
  name = "bad_next",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * #k end,
}
