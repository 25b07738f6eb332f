-- Primitive test: neg (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_neg",
  summary = "y = -a",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = -v.a
  end,
}
