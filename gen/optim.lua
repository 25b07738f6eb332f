-- optim: the optimizers of the train pass, with PyTorch's update formulas (torch.optim, 1.13,
-- single-tensor path), written in the graph IR so the update runs in the same kernel as the
-- backward, right after each parameter's gradient is complete.
--
-- hyper  the run-time hyperparameters, in the order of the train pass's `opt` argument (the
--        header has an index macro for each); every one is a value of the kernel's dtype.
-- state  the optimizer's tensors per trainable parameter p, named <p>_<key> (PyTorch's state
--        keys), updated in place; they start at zero.
-- update(G, p, g, h, s) -> new p, { key = new state }: p the parameter, g its gradient, h the
--        hyperparameters by name (scalars, shape {}), s the state by key.
--
-- Formulas (d = g + weight_decay * p unless said):
--   sgd       p - lr * d
--   momentum  buf = momentum * buf + d; p - lr * buf (dampening 0, not Nesterov; a zero buffer
--             gives PyTorch's first step buf = d exactly)
--   adam      m = beta1 * m + (1 - beta1) * d; v = beta2 * v + (1 - beta2) * d * d;
--             p - (lr / (1 - beta1^step)) * (m / (sqrt(v) / sqrt(1 - beta2^step) + eps))
--   adamw     as adam with d = g, from p * (1 - lr * weight_decay)
-- step is the number of this step, 1 for the first (a whole number in the dtype).

local optim = {}

local function scale(G, s, n) return G:bcast(s, n.shape, {}) end -- a scalar over n's shape

local function decayed(G, p, g, h)
  return G:add(g, G:mul(scale(G, h.weight_decay, p), p))
end

local function adam_update(G, p, d, h, s)
  local one = G:scalar(1, {})
  local b1, b2 = h.beta1, h.beta2
  local m = G:add(G:mul(s.exp_avg, scale(G, b1, p)), G:mul(d, scale(G, G:sub(one, b1), p)))
  local v = G:add(G:mul(s.exp_avg_sq, scale(G, b2, p)), G:mul(G:mul(scale(G, G:sub(one, b2), p), d), d))
  local step_size = G:div(h.lr, G:sub(one, G:powi(b1, h.step)))
  local bc2_sqrt = G:sqrt(G:sub(one, G:powi(b2, h.step)))
  local denom = G:add(G:div(G:sqrt(v), scale(G, bc2_sqrt, p)), scale(G, h.eps, p))
  return m, v, G:mul(scale(G, step_size, p), G:div(m, denom))
end

optim.OPTIMIZERS = {
  sgd = {
    hyper = { "lr", "weight_decay" }, state = {},
    update = function(G, p, g, h)
      return G:sub(p, G:mul(scale(G, h.lr, p), decayed(G, p, g, h))), {}
    end,
  },
  momentum = {
    hyper = { "lr", "momentum", "weight_decay" }, state = { "momentum_buffer" },
    update = function(G, p, g, h, s)
      local buf = G:add(G:mul(scale(G, h.momentum, p), s.momentum_buffer), decayed(G, p, g, h))
      return G:sub(p, G:mul(scale(G, h.lr, p), buf)), { momentum_buffer = buf }
    end,
  },
  adam = {
    hyper = { "lr", "beta1", "beta2", "eps", "weight_decay", "step" }, state = { "exp_avg", "exp_avg_sq" },
    update = function(G, p, g, h, s)
      local m, v, delta = adam_update(G, p, decayed(G, p, g, h), h, s)
      return G:sub(p, delta), { exp_avg = m, exp_avg_sq = v }
    end,
  },
  adamw = {
    hyper = { "lr", "beta1", "beta2", "eps", "weight_decay", "step" }, state = { "exp_avg", "exp_avg_sq" },
    update = function(G, p, g, h, s)
      local shrunk = G:mul(p, scale(G, G:sub(G:scalar(1, {}), G:mul(h.lr, h.weight_decay)), p))
      local m, v, delta = adam_update(G, p, g, h, s)
      return G:sub(shrunk, delta), { exp_avg = m, exp_avg_sq = v }
    end,
  },
}

optim.NAMES = { "sgd", "momentum", "adam", "adamw" }

return optim
