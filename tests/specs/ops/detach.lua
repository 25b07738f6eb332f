-- Primitive test: detach (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_detach",
  summary = "a shift that cancels: value a*b, so d/da = b even though the shift depends on a",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.s = g.detach(g.first(v.a, 2))
    v.y = (v.a - v.s) * v.b + v.s * v.b
  end,
}
