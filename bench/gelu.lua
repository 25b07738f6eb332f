-- bench/gelu.lua: GELU of x[rows][dim], for the benchmark's GELU rows (against oneDNN's eltwise
-- GELU). A spec file, not a graph of the catalogue: bench/run.sh emits it by path.
return {
  name = "gelu",
  summary = "y = gelu(x) elementwise, erf (exact) or tanh approximation",
  dims = { { "rows", 8 }, { "dim", 256 } },
  attrs = { { "approx", kind = "enum", values = { "erf", "tanh" }, default = "erf" } },
  inputs = { { "x", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.gelu(v.x, g.attr.approx)
  end,
}
