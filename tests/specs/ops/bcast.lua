-- Primitive test: bcast (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_bcast",
  summary = "broadcasts of [dim] and [rows][1]",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim" }, { "c", "dim" }, { "r", "rows" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.a * v.c + g.reshape(v.r, { g.dim.rows, 1 }) * v.a
  end,
}
