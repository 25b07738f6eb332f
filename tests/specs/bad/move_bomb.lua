-- expect: attempt to call a nil value (field 'move')
-- table.move loops in C over a range of any length.
table.move({ 1 }, 1, 1 << 50, 2)
return {
  name = "bad_move_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
