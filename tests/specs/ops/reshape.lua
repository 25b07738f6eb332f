-- Primitive test: reshape (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_reshape",
  summary = "split and merge reshapes",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "b", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.flat = g.reshape(v.a * v.a, { g.dim.rows * g.dim.dim })
    v.back = g.reshape(v.flat, { g.dim.rows, g.dim.dim })
    v.y = v.back * v.b + g.reshape(g.reshape(v.b, { g.dim.rows * g.dim.dim, 1 }), { g.dim.rows, g.dim.dim })
  end,
}
