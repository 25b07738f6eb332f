-- Primitive test: maximum (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test). Random inputs never tie; ties are checked in
-- tests/test_operators.c (the gradient is shared half and half).
return {
  name = "op_maximum",
  summary = "y = maximum(a, b) and minimum(a, b)",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.maximum(v.a, v.b) * 2 + g.minimum(v.a, v.b)
  end,
}
