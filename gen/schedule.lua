-- schedule: the unroll policy over the loop IR. Decides, per nest, how many outer loops stay
-- loops (nest.keep) and whether its reduction is written out term by term (nest.unroll_reduce).
--   none: every loop stays a loop (reductions still use explicit lane accumulators).
--   full: everything is straight-line code; refused above HARD_LIMIT terms.
--   auto: innermost levels are unrolled while the unrolled part of a nest stays within
--         NEST_BUDGET terms and the function within FUNCTION_BUDGET; big shapes stay loops
--         with constant bounds, so code size follows the graph, not the shape.
-- Sizes are counted in expression terms (loads, constants and operators of the unrolled code).

local util = require("util")

local schedule = {}

schedule.NEST_BUDGET = 1024
schedule.FUNCTION_BUDGET = 16384
schedule.HARD_LIMIT = 2000000

local function expr_size(e)
  if e.k == "op" then
    local s = 1
    for _, a in ipairs(e.args) do s = s + expr_size(a) end
    return s
  elseif e.k == "ifzero" then return 1 + expr_size(e.e) end
  return 1
end

-- Terms of the body once unrolled (the reduction included), and of one copy of it.
local function body_terms(nest)
  local b = nest.body
  local per = expr_size(b.expr) + 1
  if b.k == "reduce" then
    local n = 1
    for _, r in ipairs(b.rvars) do n = n * r.n end
    return per * n
  end
  return per
end

function schedule.run(L, policy, fn_name)
  local used = 0
  for _, nest in ipairs(L.nests) do
    local body = body_terms(nest)
    local keep = #nest.loops
    local unroll_reduce = false
    if policy == "full" then
      keep, unroll_reduce = 0, true
    elseif policy == "auto" and body <= schedule.NEST_BUDGET and used + body <= schedule.FUNCTION_BUDGET then
      unroll_reduce = true
      local size = body
      while keep > 0 do
        local next_size = size * nest.loops[keep].n
        if next_size > schedule.NEST_BUDGET or used + next_size > schedule.FUNCTION_BUDGET then break end
        size, keep = next_size, keep - 1
      end
    end
    nest.keep, nest.unroll_reduce = keep, unroll_reduce
    local unrolled = unroll_reduce and body or 1
    for k = keep + 1, #nest.loops do unrolled = unrolled * nest.loops[k].n end
    used = used + unrolled
  end
  if used > schedule.HARD_LIMIT then
    util.fail(string.format("%s: --unroll %s would emit about %d terms (limit %d); use --unroll auto",
      fn_name, policy, used, schedule.HARD_LIMIT))
  end
  L.unrolled_terms = used
  return L
end

return schedule
