-- Log-softmax over the last axis, in the numerically safe form: with d = x - max(x), whose
-- largest element is 0, y = d - log(sum(exp(d))); the sum lies in [1, dim], so no row overflows
-- and its log is exact to a few ulps. The shift cannot change the result (log-softmax is
-- shift-invariant), hence detach: the derivative does not flow through the maximum.
return {
  name = "log_softmax",
  summary = "y = x - max(x) - log(sum(exp(x - max(x)))) over the last axis",
  dims = { { "rows", 8 }, { "dim", 64 } },
  inputs = { { "x", "rows", "dim" } },
  outputs = { "y" },

  forward = function(g, v)
    v.shift   = g.detach(g.max(v.x, -1))
    v.d       = v.x - v.shift
    v.e       = g.exp(v.d)
    v.total   = g.sum(v.e, -1)
    v.y       = v.d - g.log(v.total)
  end,

  -- with p = softmax(x) = e / total: dx = dy - p sum(dy); dy' = dx - sum(dx p)
  vjp = function(g, v, cot)
    return { x = cot.y - v.e / v.total * g.sum(cot.y, -1) }
  end,
  jvp = function(g, v, tan)
    return { y = tan.x - g.sum(tan.x * (v.e / v.total), -1) }
  end,
}
