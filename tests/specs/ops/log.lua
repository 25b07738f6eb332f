-- Primitive test: log (tests/test_ops.c checks its JVP against finite differences and its VJP
-- against the JVP with the adjoint test).
return {
  name = "op_log",
  summary = "y = log(a)",
  dims = { { "rows", 3 }, { "dim", 5 } },
  inputs = { { "a", "rows", "dim", init = "positive" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.log(v.a)
  end,
}
