-- expect: a tensor of 9 axes (at most 8)
-- The C library describes an argument with at most 8 axes: a 9-axis output passed the
-- generator and ended in an internal error.
return {
  name = "bad_rank9",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = g.reshape(g.exp(v.x), { 1, 1, 1, 1, 1, 1, 1, 2, 2 }) end,
}
