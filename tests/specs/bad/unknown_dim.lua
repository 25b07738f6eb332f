-- expect: input x: unknown dim 'm'
return {
  name = "bad_unknown_dim",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "m" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
