-- expect: attempt to call a nil value (method 'find')
-- Exponential backtracking inside one C call, where no instruction hook fires: specs get no
-- pattern matching, neither string.find nor ("..."):find.
local _ = ("a"):rep(40):find(("a*"):rep(20) .. "b")
return {
  name = "bad_pattern_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
