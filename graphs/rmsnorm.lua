-- RMSNorm over the last axis (seed 001): no centering, y = x / sqrt(mean(x^2) + eps) * gamma.
return {
  name = "rmsnorm",
  summary = "y = x / sqrt(mean(x^2) + eps) * gamma (+ beta when bias=1) over the last axis",
  dims = { { "rows", 8 }, { "dim", 64 } },
  attrs = {
    { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = "dtype_eps" },
    { "bias", kind = "int", values = { 0, 1 }, default = 0 },
  },
  inputs = {
    { "x", "rows", "dim" }, { "gamma", "dim" },
    { "beta", "dim", when = function(attr) return attr.bias == 1 end },
  },
  outputs = { "y" },
  saved = { "rms", "inv_rms" },

  forward = function(g, v)
    v.sq         = v.x * v.x
    v.mean_sq    = g.mean(v.sq, -1)
    v.mean_sq_eps = v.mean_sq + g.attr.eps
    v.rms        = g.sqrt_clamp(v.mean_sq_eps)
    v.inv_rms    = g.recip(v.rms)
    v.normalized = v.x * v.inv_rms
    v.scaled     = v.normalized * v.gamma
    if g.attr.bias == 1 then v.y = v.scaled + v.beta else v.y = v.scaled end
  end,
}
