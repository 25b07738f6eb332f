-- expect: expected a finite number
-- A number attr's default is checked like a command-line value (it reaches the banner).
return {
  name = "bad_inject_attr_default",
  summary = "must fail",
  dims = { { "n", 4 } },
  attrs = { { "eps", kind = "number", default = "1e-6 */ #error x /*" } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * 2 end,
}
