-- Primitive test: pick0 (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_pick0",
  summary = "first element along an axis, differentiated (no detach)",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.first(v.a, 2) * v.b + g.first(v.a * v.b, { 1, 2 })
  end,
}
