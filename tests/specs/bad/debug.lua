-- expect: 'debug' is not available
local d = debug.getinfo(1)
return {
  name = "bad_debug",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
