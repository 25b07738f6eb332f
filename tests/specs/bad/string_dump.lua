-- expect: dump
local b = string.dump(function() end)
return {
  name = "bad_string_dump",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
