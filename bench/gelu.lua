-- bench/gelu.lua: standalone GELU over x[rows][dim], for the benchmark's gelu rows (kerngen has
-- no GELU graph of its own; the ffn graphs use the same g.gelu node). A spec file, emitted by
-- path: kerngen emit bench/gelu.lua rows=64 dim=3072 gelu=erf
return {
  name = "gelu",
  summary = "y = gelu(x) elementwise (erf: exact; tanh: the approximation), PyTorch's formulas",
  dims = { { "rows", 8 }, { "dim", 256 } },
  attrs = { { "gelu", kind = "enum", values = { "erf", "tanh" }, default = "erf" } },
  inputs = { { "x", "rows", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = g.gelu(v.x, g.attr.gelu)
  end,
}
