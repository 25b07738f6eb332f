-- GroupNorm, channel-last x[b][h][w][c] (seed 001's documented meaning, as PyTorch): group k
-- holds channels k*c/groups .. (k+1)*c/groups - 1 at every (h, w); statistics per (sample,
-- group) over h, w and the group's channels. Viewing x as [b][h][w][groups][c/groups] makes
-- that a reduction over axes 2, 3 and 5.
return {
  name = "groupnorm",
  summary = "channel-last GroupNorm: stats per (sample, group) over h, w and the group's channels",
  dims = { { "b", 2 }, { "h", 4 }, { "w", 4 }, { "c", 8 }, { "groups", 2 } },
  attrs = { { "eps", kind = "number", min = 0, torchlean = 1e-6, pytorch = 1e-5 } },
  inputs = { { "x", "b", "h", "w", "c" }, { "gamma", "c" }, { "beta", "c" } },
  outputs = { "y" },
  saved = { "mean", "std", "inv_std" },
  validate = function(dim)
    if dim.c % dim.groups ~= 0 then
      return "groups=" .. dim.groups .. " must divide c=" .. dim.c
    end
  end,

  forward = function(g, v)
    local d = g.dim
    local cg = d.c // d.groups
    local axes = { 2, 3, 5 }
    v.xg          = g.reshape(v.x, { d.b, d.h, d.w, d.groups, cg })
    v.shift       = g.detach(g.first(v.xg, axes))
    v.xs          = v.xg - v.shift
    v.mean        = g.mean(v.xs, axes)
    v.centered    = v.xs - v.mean
    v.centered_sq = v.centered * v.centered
    v.var         = g.mean(v.centered_sq, axes)
    v.var_eps     = v.var + g.attr.eps
    v.std         = g.sqrt_clamp(v.var_eps)
    v.inv_std     = g.recip(v.std)
    v.normalized  = v.centered * v.inv_std
    v.scaled      = v.normalized * g.reshape(v.gamma, { d.groups, cg })
    v.yg          = v.scaled + g.reshape(v.beta, { d.groups, cg })
    v.y           = g.reshape(v.yg, { d.b, d.h, d.w, d.c })
  end,
}
