-- Channel-first BatchNorm without running statistics (seed 002: per channel over the spatial
-- axes of x[c][spatial...], = PyTorch BatchNorm training mode with N=1), its InstanceNorm
-- aliases, and inference-time BatchNorm with running statistics (seed 001).

local SPATIAL = { { "l" }, { "h", "w" }, { "d", "h", "w" } }
local DEFAULT = { { 16 }, { 8, 8 }, { 4, 4, 4 } }

local function declare(n, inputs)
  local dims, x = { { "c", 4 } }, { "x", "c" }
  for k, s in ipairs(SPATIAL[n]) do
    dims[#dims + 1] = { s, DEFAULT[n][k] }
    x[#x + 1] = s
  end
  local ins = { x, { "gamma", "c" }, { "beta", "c" } }
  for _, i in ipairs(inputs or {}) do ins[#ins + 1] = i end
  return dims, ins
end

-- a per-channel vector [c] as [c][1]...[1], so it broadcasts along the channel axis
local function per_channel(g, n, t)
  local shape = { g.dim.c }
  for k = 1, n do shape[k + 1] = 1 end
  return g.reshape(t, shape)
end

local function spatial_axes(n)
  local axes = {}
  for k = 1, n do axes[k] = k + 1 end
  return axes
end

local function stateless(n)
  local dims, inputs = declare(n)
  local axes = spatial_axes(n)
  return {
    name = "batchnorm" .. n .. "d",
    summary = "per-channel normalization over the spatial axes of x[c]" .. string.rep("[.]", n) .. " (N=1 training mode)",
    dims = dims,
    attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 } },
    inputs = inputs,
    outputs = { "y" },
    saved = { "mean", "std", "inv_std" },

    forward = function(g, v)
      v.shift       = g.detach(g.first(v.x, axes)) -- as in layernorm: keeps f32 exact for large means
      v.xs          = v.x - v.shift
      v.mean        = g.mean(v.xs, axes)
      v.centered    = v.xs - v.mean
      v.centered_sq = v.centered * v.centered
      v.var         = g.mean(v.centered_sq, axes)
      v.var_eps     = v.var + g.attr.eps
      v.std         = g.sqrt_clamp(v.var_eps)
      v.inv_std     = g.recip(v.std)
      v.normalized  = v.centered * v.inv_std
      v.scaled      = v.normalized * per_channel(g, n, v.gamma)
      v.y           = v.scaled + per_channel(g, n, v.beta)
    end,

    -- seed 001 (batchNorm2d VJP/JVP): LayerNorm's closed forms with means over the spatial axes
    vjp = function(g, v, cot)
      local dy, xhat = cot.y, v.normalized
      local dxhat = dy * per_channel(g, n, v.gamma)
      local dx = v.inv_std * (dxhat - g.mean(dxhat, axes) - xhat * g.mean(dxhat * xhat, axes))
      return {
        x = dx,
        gamma = g.reshape(g.sum(dy * xhat, axes), { g.dim.c }),
        beta = g.reshape(g.sum(dy, axes), { g.dim.c }),
      }
    end,
    jvp = function(g, v, tan)
      local xhat, dx = v.normalized, tan.x
      local dxhat = v.inv_std * (dx - g.mean(dx, axes) - xhat * g.mean(dx * xhat, axes))
      return { y = per_channel(g, n, v.gamma) * dxhat + xhat * per_channel(g, n, tan.gamma) + per_channel(g, n, tan.beta) }
    end,
  }
end

local function inference(n)
  local dims, inputs = declare(n, { { "running_mean", "c" }, { "running_var", "c", init = "positive" } })
  return {
    name = "batchnorm_inference" .. n .. "d",
    summary = "y = (x - running_mean) / sqrt(max(running_var, 0) + eps) * gamma + beta, per channel",
    dims = dims,
    attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 } },
    inputs = inputs,
    outputs = { "y" },

    forward = function(g, v)
      v.centered   = v.x - per_channel(g, n, v.running_mean)
      v.var_eps    = g.clamp0(v.running_var) + g.attr.eps
      v.std        = g.sqrt_clamp(v.var_eps)
      v.inv_std    = g.recip(v.std)
      v.normalized = v.centered * per_channel(g, n, v.inv_std)
      v.scaled     = v.normalized * per_channel(g, n, v.gamma)
      v.y          = v.scaled + per_channel(g, n, v.beta)
    end,
  }
end

local graphs = {}
for n = 1, 3 do
  graphs[#graphs + 1] = stateless(n)
  graphs[#graphs + 1] = { name = "instancenorm" .. n .. "d", alias_of = "batchnorm" .. n .. "d" }
  graphs[#graphs + 1] = inference(n)
end
return graphs
