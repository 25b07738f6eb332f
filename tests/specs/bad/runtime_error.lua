-- expect: runtime_error.lua:8: attempt to perform arithmetic on a nil value
return {
  name = "bad_runtime_error",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) local z = nil; v.y = v.x * (z + 1) end,
}
