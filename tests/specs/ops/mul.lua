-- Primitive test: mul (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_mul",
  summary = "y = a * b",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.a * v.b
  end,
}
