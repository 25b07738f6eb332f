-- Softmax over the last axis, in the numerically safe form: the exponent of x - max(x), whose
-- largest term is exp(0) = 1, so no row overflows. The shift cannot change the result (softmax
-- is shift-invariant), hence detach: the derivative does not flow through the maximum.
return {
  name = "softmax",
  summary = "y = exp(x - max(x)) / sum(exp(x - max(x))) over the last axis",
  dims = { { "rows", 8 }, { "dim", 64 } },
  inputs = { { "x", "rows", "dim" } },
  outputs = { "y" },

  forward = function(g, v)
    v.shift   = g.detach(g.max(v.x, -1))
    v.e       = g.exp(v.x - v.shift)
    v.total   = g.sum(v.e, -1)
    v.y       = v.e / v.total
  end,

  -- dx = y * (dy - sum(dy * y)); dy' = y * (dx - sum(dx * y))
  vjp = function(g, v, cot)
    return { x = v.y * (cot.y - g.sum(cot.y * v.y, -1)) }
  end,
  jvp = function(g, v, tan)
    return { y = v.y * (tan.x - g.sum(tan.x * v.y, -1)) }
  end,
}
