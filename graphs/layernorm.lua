-- LayerNorm over the last axis (seed 000's node chain; closed forms from seed 001).
-- The mean is taken of x - x[r][0] (a shift that cannot change the result, hence detach):
-- rows of mean 1e4 and unit variance then keep full f32 accuracy (DESIGN.md, measured facts).
return {
  name = "layernorm",
  summary = "y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis",
  dims = { { "rows", 8 }, { "dim", 64 } },
  attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 } },
  inputs = { { "x", "rows", "dim" }, { "gamma", "dim" }, { "beta", "dim" } },
  outputs = { "y" },
  saved = { "mean", "std", "inv_std" },

  forward = function(g, v)
    v.shift       = g.detach(g.first(v.x, -1))
    v.xs          = v.x - v.shift
    v.mean        = g.mean(v.xs, -1)
    v.centered    = v.xs - v.mean
    v.centered_sq = v.centered * v.centered
    v.var         = g.mean(v.centered_sq, -1)
    v.var_eps     = v.var + g.attr.eps
    v.std         = g.sqrt_clamp(v.var_eps)
    v.inv_std     = g.recip(v.std)
    v.normalized  = v.centered * v.inv_std
    v.scaled      = v.normalized * v.gamma
    v.y           = v.scaled + v.beta
  end,

  -- seed 001: dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma
  vjp = function(g, v, cot)
    local dy, xhat = cot.y, v.normalized
    local dxhat = dy * v.gamma
    local dx = v.inv_std * (dxhat - g.mean(dxhat, -1) - xhat * g.mean(dxhat * xhat, -1))
    local dim = g.dim.dim
    return {
      x = dx,
      gamma = g.reshape(g.sum(dy * xhat, 1), { dim }),
      beta = g.reshape(g.sum(dy, 1), { dim }),
    }
  end,

  -- seed 001: dxhat = inv_std * (dx - mean(dx) - xhat * mean(dx * xhat)); dy = gamma dxhat + xhat dgamma + dbeta
  jvp = function(g, v, tan)
    local xhat, dx = v.normalized, tan.x
    local dxhat = v.inv_std * (dx - g.mean(dx, -1) - xhat * g.mean(dx * xhat, -1))
    return { y = v.gamma * dxhat + xhat * tan.gamma + tan.beta }
  end,
}
