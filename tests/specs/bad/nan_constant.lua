-- expect: operand is not a finite number
return {
  name = "bad_nan_constant",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * (0 / 0) end,
}
