-- Transformer blocks composed from other graphs used as whole nodes (seed 000's post-norm
-- block, seed 003's FFN): derivatives come from the same machinery as every graph.

local function block(name, summary, forward)
  return {
    name = name,
    summary = summary,
    dims = { { "seq", 8 }, { "dmodel", 64 }, { "dff", 256 } },
    attrs = {
      { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 },
      { "gelu", kind = "enum", values = { "erf", "tanh" }, torchlean = "tanh", pytorch = "erf" },
    },
    inputs = {
      { "x", "seq", "dmodel" }, { "gamma", "dmodel" }, { "beta", "dmodel" },
      { "w1", "dff", "dmodel", init = "linear" }, { "b1", "dff" }, { "w2", "dmodel", "dff", init = "linear" }, { "b2", "dmodel" },
    },
    outputs = { "y" },
    forward = forward,
  }
end

local function weights(v, x)
  return { x = x, w1 = v.w1, b1 = v.b1, w2 = v.w2, b2 = v.b2 }
end

return {
  block("prenorm_ffn", "y = x + mlp(layernorm(x)), row by row", function(g, v)
    v.normed = g.call("layernorm", { x = v.x, gamma = v.gamma, beta = v.beta }, { eps = g.attr.eps }).y
    v.update = g.call("mlp", weights(v, v.normed), { gelu = g.attr.gelu }).y
    v.y = v.x + v.update
  end),
  block("postnorm_ffn", "y = layernorm(x + mlp(x)), row by row", function(g, v)
    v.residual = g.call("seq_ffn", weights(v, v.x), { gelu = g.attr.gelu }).y
    v.y = g.call("layernorm", { x = v.residual, gamma = v.gamma, beta = v.beta }, { eps = g.attr.eps }).y
  end),
}
