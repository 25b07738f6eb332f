-- Primitive test: abs (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test; random inputs are never 0).
return {
  name = "op_abs",
  summary = "y = |a| * a",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.abs(v.a) * v.a
  end,
}
