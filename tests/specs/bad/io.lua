-- expect: 'io' is not available
local f = io.open("/tmp/kerngen_sandbox_escape", "w")
return {
  name = "bad_io",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
