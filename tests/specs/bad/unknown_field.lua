-- expect: unknown field 'valdiate'
return {
  name = "bad_unknown_field",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  valdiate = function() return "never called" end,
  forward = function(g, v) v.y = v.x end,
}
