-- Primitive test: amax (g.max, g.min) over the last axis (row form), over the first axis
-- (column form) and over all axes (tests/test_ops.c: JVP against finite differences, VJP against
-- the JVP with the adjoint test; random inputs never tie).
return {
  name = "op_amax",
  summary = "y = max over the last axis + min over the first + max of all, broadcast",
  dims = { { "rows", 3 }, { "dim", 21 } },
  inputs = { { "a", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.max(v.a, -1) + g.min(v.a, 1) + g.max(v.a, { 1, 2 }) * v.a
  end,
}
