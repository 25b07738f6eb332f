-- expect: input name 'HUGE_VAL' must be lower case
-- <math.h>'s HUGE_VAL is a macro: as a parameter name it expanded to a call, and the AOT
-- kernel called its input buffer as code. Tensor names are lower case, macros are not.
return {
  name = "bad_macro_name",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "HUGE_VAL", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.HUGE_VAL * 2 end,
}
