-- schedule: the unroll policy over the loop IR (loops.lua). Marks each loop unrolled or not
-- (loop.unroll) and each reduce statement written out term by term or not (stmt.unroll).
--   none: loops stay loops (reductions still use explicit lane accumulators), except loops of
--         at most TINY iterations around straight-line code (GroupNorm's channels of a group),
--         which compilers vectorize better written out.
--   full: everything is straight-line code; refused above HARD_LIMIT terms.
--   auto: the JIT's schedule (tcc runs straight-line code faster and keeps nothing in
--         registers). A loop is unrolled when everything inside it is, and its unrolled size
--         stays within NEST_BUDGET terms and the function's within FUNCTION_BUDGET; a loop around
--         straight-line code too long for that is strip-mined (loop.strip = STRIP: blocks of
--         STRIP copies of its body, then the rest); big shapes stay loops with constant bounds,
--         so code size follows the graph, not the shape. emit_c gives the loops of this policy
--         base pointers and invariant locals (F.policy). Loops and reduces that x86.lua can
--         write as machine code stay loops (it writes out the loops inside them itself).
-- Sizes are counted in expression terms (loads, constants and operators of the emitted code).
-- Unrolling never changes results: the order of every sum is fixed in the IR.

local util = require("util")
local x86 = require("x86")

local schedule = {}

schedule.NEST_BUDGET = 512
schedule.FUNCTION_BUDGET = 4096
schedule.HARD_LIMIT = 2000000
schedule.TINY = 4
schedule.STRIP = 8

local function expr_size(e)
  if e.k == "op" then
    local s = 1
    for _, a in ipairs(e.args) do s = s + expr_size(a) end
    return s
  elseif e.k == "ifzero" then return 1 + expr_size(e.e)
  elseif e.k == "tree" then
    local s = 0
    for _, t in ipairs(e.terms) do s = s + 1 + expr_size(t) end
    return s
  end
  return 1
end

-- Terms emitted for s under the decisions taken; `all` reports whether s is straight-line.
local function size(s, policy, budget, target, dtype)
  if s.k == "loop" then
    local inner, straight = 0, true
    for _, t in ipairs(s.body) do
      local n, all = size(t, policy, budget, target, dtype)
      inner = inner + n
      straight = straight and all
    end
    -- machine code (x86.lua), which writes out the loops inside that the C code does
    if x86.applies(policy, target) and not s.lanes and x86.loop_supported(s, dtype) then
      s.unroll, s.strip = false, nil
      return inner + 1, false
    end
    s.unroll = policy == "full" or (straight and (s.n <= schedule.TINY or s.lanes or (policy == "auto" and s.n * inner <= budget)))
    if s.unroll then return s.n * inner, true end
    local strip = schedule.STRIP
    if policy == "auto" and straight and s.n >= 2 * strip and inner * strip <= budget then
      s.strip = strip
      return inner * (strip + s.n % strip) + 1, false
    end
    return inner + 1, false
  end
  local per = expr_size(s.expr) + 1
  if s.k ~= "reduce" then return per, true end
  local count = 1
  for _, r in ipairs(s.rvars) do count = count * r.n end
  s.unroll = policy == "full" or (policy == "auto" and per * count <= budget and not (x86.applies(policy, target) and x86.supported(s, dtype)))
  if s.unroll then return per * count, true end
  return per * s.lanes + s.lanes, false
end

-- Undo every unrolling under s (a statement over the function's budget).
local function keep_loops(s)
  s.unroll, s.strip = false, nil
  for _, t in ipairs(s.body or {}) do keep_loops(t) end
end

function schedule.run(F, policy, fn_name, target, dtype)
  local used = 0
  for _, s in ipairs(F.body) do
    local n = size(s, policy, schedule.NEST_BUDGET, target, dtype)
    if policy == "auto" and used + n > schedule.FUNCTION_BUDGET then
      -- unroll what the function's remaining budget still holds, not nothing: a nest that
      -- did not fit whole would otherwise lose even its short written-out sums
      keep_loops(s)
      n = size(s, policy, schedule.FUNCTION_BUDGET - used, target, dtype)
      if used + n > schedule.FUNCTION_BUDGET then
        keep_loops(s)
        n = size(s, "none")
      end
    end
    used = used + n
  end
  if used > schedule.HARD_LIMIT then
    util.fail(util.format("%s: --unroll %s would emit about %d terms (limit %d); use --unroll auto",
      fn_name, policy, used, schedule.HARD_LIMIT))
  end
  F.unrolled_terms = used
  F.policy = policy
  return F
end

return schedule
