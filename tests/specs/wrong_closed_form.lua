-- A LayerNorm whose closed-form VJP and JVP drop the xhat * mean(dxhat * xhat) term: the
-- checker must catch both (tests/test_check.c). Not a usable graph.
return {
  name = "wrong_closed_form",
  summary = "layernorm with wrong closed forms",
  dims = { { "rows", 3 }, { "dim", 6 } },
  attrs = { { "eps", kind = "number", min = 0, default = 1e-5 } },
  inputs = { { "x", "rows", "dim" }, { "gamma", "dim" }, { "beta", "dim" } },
  outputs = { "y" },
  forward = function(g, v)
    v.mean = g.mean(v.x, -1)
    v.centered = v.x - v.mean
    v.inv_std = g.recip(g.sqrt_clamp(g.mean(v.centered * v.centered, -1) + g.attr.eps))
    v.normalized = v.centered * v.inv_std
    v.y = v.normalized * v.gamma + v.beta
  end,
  vjp = function(g, v, cot)
    local dxhat = cot.y * v.gamma
    return {
      x = v.inv_std * (dxhat - g.mean(dxhat, -1)),
      gamma = g.reshape(g.sum(cot.y * v.normalized, 1), { g.dim.dim }),
      beta = g.reshape(g.sum(cot.y, 1), { g.dim.dim }),
    }
  end,
  jvp = function(g, v, tan)
    local dxhat = v.inv_std * (tan.x - g.mean(tan.x, -1))
    return { y = v.gamma * dxhat + v.normalized * tan.gamma + tan.beta }
  end,
}
