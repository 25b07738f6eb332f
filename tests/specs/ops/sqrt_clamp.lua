-- Primitive test: sqrt_clamp (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_sqrt_clamp",
  summary = "y = sqrt(max(a, 0))",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim", init = "positive" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.sqrt_clamp(v.a)
  end,
}
