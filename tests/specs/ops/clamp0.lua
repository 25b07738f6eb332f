-- Primitive test: clamp0 (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_clamp0",
  summary = "y = max(a, 0) * a",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.clamp0(v.a) * v.a
  end,
}
