-- Primitive test: sum (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_sum",
  summary = "sums over each axis, broadcast back",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.sum(v.a, 2) * v.b + g.sum(v.a * v.a, 1) + g.sum(v.b, { 1, 2 })
  end,
}
