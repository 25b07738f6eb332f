-- The math functions kerngen emits (gen/mathfn.lua), elementwise, one output each:
-- tests/test_mathfn.c measures their errors on a sweep and compares JIT and AOT bits. The VJP
-- with a unit cotangent on a gelu output gives that GELU's derivative. log reads its own input
-- b[m], so that its sweep can cover every binade (and a's zeros do not meet log's derivative).
return {
  name = "mathfn",
  summary = "the emitted math functions: exp, erf, erfc, tanh, gelu (erf, tanh) of a[n], log of b[m]",
  dims = { { "n", 64 }, { "m", 64 } },
  inputs = { { "a", "n" }, { "b", "m" } },
  outputs = { "y_exp", "y_erf", "y_erfc", "y_tanh", "y_gelu_erf", "y_gelu_tanh", "y_log" },
  forward = function(g, v)
    v.y_exp = g.exp(v.a)
    v.y_erf = g.erf(v.a)
    v.y_erfc = g.erfc(v.a)
    v.y_tanh = g.tanh(v.a)
    v.y_gelu_erf = g.gelu(v.a, "erf")
    v.y_gelu_tanh = g.gelu(v.a, "tanh")
    v.y_log = g.log(v.b)
  end,
}
