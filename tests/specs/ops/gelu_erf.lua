-- Primitive test: gelu_erf (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_gelu_erf",
  summary = "y = gelu(a), erf form",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.gelu(v.a * 3, "erf")
  end,
}
