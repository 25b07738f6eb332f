-- expect: 'load' is not available
local f = load("return 1")
return {
  name = "bad_load",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
