-- expect: 'getmetatable' is not available
local mt = getmetatable("")
return {
  name = "bad_string_metatable",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
