-- Normalization along one axis of a tensor of any rank, with per-element affine parameters
-- of the tensor's own shape (seed 001). shape=2x3x4 axis=1 normalizes along the middle axis.
return {
  name = "normalize_axis",
  summary = "stats along one axis (0-based) of x, per-element gamma and beta of x's shape",
  dims = { { "shape", "4x8x16", kind = "shape" }, { "axis", 2, min = 0 } },
  attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 } },
  inputs = { { "x", "shape" }, { "gamma", "shape" }, { "beta", "shape" } },
  outputs = { "y" },
  saved = { "mean", "std", "inv_std" },
  validate = function(dim)
    if dim.axis >= #dim.shape then
      return "axis=" .. dim.axis .. " out of range for a rank-" .. #dim.shape .. " shape (axes are 0-based)"
    end
  end,

  forward = function(g, v)
    local ax = g.dim.axis + 1
    v.shift       = g.detach(g.first(v.x, ax))
    v.xs          = v.x - v.shift
    v.mean        = g.mean(v.xs, ax)
    v.centered    = v.xs - v.mean
    v.centered_sq = v.centered * v.centered
    v.var         = g.mean(v.centered_sq, ax)
    v.var_eps     = v.var + g.attr.eps
    v.std         = g.sqrt_clamp(v.var_eps)
    v.inv_std     = g.recip(v.std)
    v.normalized  = v.centered * v.inv_std
    v.scaled      = v.normalized * v.gamma
    v.y           = v.scaled + v.beta
  end,
}
