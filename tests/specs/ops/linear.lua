-- Primitive test: linear (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_linear",
  summary = "linear map over the last axis",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "x", "rows", "dim" }, { "w", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.linear(v.x, v.w) * g.linear(v.w, v.x)
  end,
}
