-- expect: begins with the C name prefix bad_name_prefix_4_f32_
-- An argument named like one of the file's functions hides it inside the kernel.
return {
  name = "bad_name_prefix",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "bad_name_prefix_4_f32_forward_1", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.bad_name_prefix_4_f32_forward_1 * 2 end,
}
