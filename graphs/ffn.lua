-- The Transformer feed-forward sublayer (seed 003): mlp(x) = w2 GELU(w1 x + b1) + b2, the
-- residual ffn y = x + mlp(x) for one vector, and seq_ffn applying it to every row of x[seq].
-- GELU: erf (exact) or tanh (approximation), PyTorch's formulas in a tail-accurate form.

local GELU = { "gelu", kind = "enum", values = { "erf", "tanh" }, torchlean = "tanh", pytorch = "erf" }
local WEIGHTS = { { "w1", "dff", "dmodel", init = "linear" }, { "b1", "dff" }, { "w2", "dmodel", "dff", init = "linear" },
  { "b2", "dmodel" } }

local function graph(name, summary, dims, x, residual)
  local inputs = { x }
  for _, w in ipairs(WEIGHTS) do inputs[#inputs + 1] = w end
  return {
    name = name,
    summary = summary,
    dims = dims,
    attrs = { GELU },
    inputs = inputs,
    outputs = { "y" },
    saved = { "hidden_pre", "hidden" },
    forward = function(g, v)
      v.hidden_pre = g.linear(v.x, v.w1) + v.b1
      v.hidden     = g.gelu(v.hidden_pre, g.attr.gelu)
      v.projected  = g.linear(v.hidden, v.w2) + v.b2
      if residual then v.y = v.x + v.projected else v.y = v.projected end
    end,
  }
end

return {
  graph("ffn", "y = x + w2 GELU(w1 x + b1) + b2 for one vector x[dmodel]",
    { { "dmodel", 64 }, { "dff", 256 } }, { "x", "dmodel" }, true),
  graph("seq_ffn", "y = x + w2 GELU(w1 x + b1) + b2 for every row of x[seq][dmodel], shared weights",
    { { "seq", 8 }, { "dmodel", 64 }, { "dff", 256 } }, { "x", "seq", "dmodel" }, true),
  graph("mlp", "y = w2 GELU(w1 x + b1) + b2 for every row of x[seq][dmodel] (no residual)",
    { { "seq", 8 }, { "dmodel", 64 }, { "dff", 256 } }, { "x", "seq", "dmodel" }, false),
}
