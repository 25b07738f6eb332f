-- WeightNorm of a dense weight (seed 001): each output row of v is scaled to norm g[o];
-- eps sits inside the square root (0 allowed: a zero row is then a domain failure).
return {
  name = "weightnorm",
  summary = "w[o][i] = g[o] * v[o][i] / sqrt(sum_i v[o][i]^2 + eps)",
  dims = { { "out", 16 }, { "in", 32 } },
  attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 0 } },
  inputs = { { "v", "out", "in" }, { "g", "out" } },
  outputs = { "w" },
  saved = { "norm", "inv_norm" },

  forward = function(g, v)
    v.sq          = v.v * v.v
    v.norm_sq     = g.sum(v.sq, -1)
    v.norm_sq_eps = v.norm_sq + g.attr.eps
    v.norm        = g.sqrt_clamp(v.norm_sq_eps)
    v.inv_norm    = g.recip(v.norm)
    v.direction   = v.v * v.inv_norm
    v.w           = v.direction * g.reshape(v.g, { g.dim.out, 1 })
  end,
}
