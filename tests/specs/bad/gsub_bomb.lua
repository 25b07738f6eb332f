-- expect: attempt to call a nil value (field 'gsub')
local _ = string.gsub(("a"):rep(5000), ".-.-.-.-.-b", "")
return {
  name = "bad_gsub_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
