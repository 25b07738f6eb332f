-- expect: would define BAD_MACRO_COLLISION_4_F32_FORWARD_WS_SIZE for both
-- The size macro of an input named forward_ws is the forward pass's workspace macro: the
-- header defined it twice, and a caller sizing buffers by it got one of the two sizes.
return {
  name = "bad_macro_collision",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "forward_ws", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.forward_ws * 2 end,
}
