-- expect: forward did not define output 'y'

return {
  name = "bad_undefined_output",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.z = v.x
  end,
}
