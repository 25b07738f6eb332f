-- lower: graph IR -> loop IR, with fusion and the workspace plan.
--
-- Takes a simplified graph and decides which nodes live in memory ("materialized"): reductions,
-- nodes with domain checks, outputs, computed arguments of broadcasts (reading them through a
-- broadcast would repeat their work), arguments of reshapes that merge axes, and elementwise
-- nodes whose inlined expression is costly and used more than once. Every other node is fused into its
-- consumers' expressions, so intermediates stay out of memory.
--
-- Loop IR: one nest per materialized node, with constant trip counts:
--   nest = { loops = {{var, n}...}, body = stmt }                        (outermost first)
--   stmt = { k = "store",  target, expr, check }
--        | { k = "reduce", target, rvars = {{var, n}...}, expr, check }  (sum over rvars)
--   target = { buf, index }            buf = { cname, base, size }     index: affine form
--   expr = { k = "load", buf, index } | { k = "num", v } | { k = "op", op, attr, args }
--        | { k = "ifzero", index, e }  (e where index == 0, else 0)
-- Affine index forms { c = int, t = {var = coef} } keep addresses foldable when unrolled.
-- Workspace buffers are reused after their last reader (first fit), so ws stays small.

local ops = require("ops")
local util = require("util")

local lower = {}

---------------------------------------------------------------------------------------------
-- Affine index forms

local aff = {}
lower.aff = aff
function aff.const(c) return { c = c, t = {} } end
function aff.var(v) return { c = 0, t = { [v] = 1 } } end
function aff.add(a, b)
  local r = { c = a.c + b.c, t = {} }
  for v, k in pairs(a.t) do r.t[v] = k end
  for v, k in pairs(b.t) do r.t[v] = (r.t[v] or 0) + k; if r.t[v] == 0 then r.t[v] = nil end end
  return r
end
function aff.scale(a, s)
  local r = { c = a.c * s, t = {} }
  if s ~= 0 then for v, k in pairs(a.t) do r.t[v] = k * s end end
  return r
end
-- Value under env (var -> integer or affine form); vars missing from env stay symbolic.
function aff.eval(a, env)
  local r = { c = a.c, t = {} }
  for v, k in pairs(a.t) do
    local x = env and env[v]
    if type(x) == "number" then r.c = r.c + k * x
    elseif x then r = aff.add(r, aff.scale(x, k))
    else r = aff.add(r, { c = 0, t = { [v] = k } }) end
  end
  return r
end
-- The C text of a + base under env, without building intermediate forms (emit_c's hot path).
function aff.render(a, base, env)
  local c, sym = a.c + base, nil
  for v, k in pairs(a.t) do
    local x = env[v]
    if type(x) == "number" then
      c = c + k * x
    else
      sym = sym or {}
      if x then
        c = c + k * x.c
        for v2, k2 in pairs(x.t) do sym[v2] = (sym[v2] or 0) + k * k2 end
      else
        sym[v] = (sym[v] or 0) + k
      end
    end
  end
  if not sym then return tostring(c) end
  for v, k in pairs(sym) do if k == 0 then sym[v] = nil end end
  return aff.str({ c = c, t = sym })
end

function aff.str(a)
  local vars = {}
  for v in pairs(a.t) do vars[#vars + 1] = v end
  table.sort(vars)
  local parts = {}
  for _, v in ipairs(vars) do
    local k = a.t[v]
    parts[#parts + 1] = (k == 1) and v or (tostring(k) .. " * " .. v)
  end
  if a.c ~= 0 or #parts == 0 then parts[#parts + 1] = tostring(a.c) end
  return table.concat(parts, " + ")
end

local function flat(shape, idx)
  local st, r = util.strides(shape), aff.const(0)
  for k = 1, #shape do r = aff.add(r, aff.scale(idx[k], st[k])) end
  return r
end

---------------------------------------------------------------------------------------------
-- Parameters (the kernel's arguments) in a fixed order: inputs as created, then outputs.

local SUFFIX = { input = "", cotangent = "_cot", tangent = "_tan", output = "", grad = "_grad", output_tangent = "_tan" }

local function param(name, role, shape, const)
  return { cname = name .. SUFFIX[role], name = name, role = role, shape = shape, count = util.count(shape), const = const, base = 0 }
end

---------------------------------------------------------------------------------------------

function lower.run(G)
  local uses = G:uses()
  local params = {}
  local home = {} -- node -> buffer it can be loaded from (flat, in the node's own shape)
  for _, io in ipairs(G.inputs) do
    local p = param(io.name, io.role, io.node.shape, true)
    params[#params + 1] = p
    home[io.node] = p
  end
  local out_param, copies, cnames = {}, {}, {}
  local function unique(p)
    if cnames[p.cname] then
      util.fail("argument name " .. p.cname .. " is used twice (" .. cnames[p.cname] .. " and " .. p.role .. " of " .. p.name .. ")")
    end
    cnames[p.cname] = p.role .. " of " .. p.name
  end
  for _, p in ipairs(params) do unique(p) end
  for _, o in ipairs(G.outputs) do
    local p = param(o.name, o.role, o.node.shape, false)
    unique(p)
    params[#params + 1] = p
    if out_param[o.node] or home[o.node] or o.node.op == "const" then
      copies[#copies + 1] = { node = o.node, buf = p }
    else
      out_param[o.node] = p
    end
  end

  -- Arguments of reshapes that merge axes (no affine read) must be readable from memory.
  local forced = {}
  for _, n in ipairs(G.nodes) do
    if n.op == "reshape" then
      local idx = {}
      for k = 1, #n.shape do idx[k] = aff.var("v" .. k) end
      if not ops.reshape.read(n, idx, aff) then forced[n.args[1]] = true end
    end
  end

  -- Materialization plan, in topological order.
  local mat, cost, ws_bufs = {}, {}, {}
  local function materialize(n)
    mat[n] = true
    cost[n] = 0
    if out_param[n] then home[n] = out_param[n]
    else
      local b = { cname = "ws", size = util.count(n.shape), id = #ws_bufs }
      ws_bufs[#ws_bufs + 1] = b
      home[n] = b
    end
  end
  for _, n in ipairs(G.nodes) do
    local def = ops[n.op]
    if n.op == "input" then
      cost[n] = 0
    elseif n.op == "const" then
      cost[n] = 0
    elseif def.kind == "view" then
      local a = n.args[1]
      if home[a] and def.same_layout and not out_param[n] then
        home[n] = home[a] -- same flat layout: a free view
        cost[n] = 0
      else
        -- a broadcast repeats its argument's work for every copy: compute it once
        if n.op == "bcast" and not home[a] and cost[a] > 0 then materialize(a) end
        cost[n] = cost[a]
        if forced[n] or out_param[n] then materialize(n) end
      end
    elseif def.kind == "reduce" then
      materialize(n)
    else -- elementwise
      local c = def.cost
      for _, a in ipairs(n.args) do c = c + cost[a] end
      cost[n] = c
      if def.domain or forced[n] or out_param[n] or ((uses[n.id] or 0) > 1 and c > 2) or c > 40 then
        materialize(n)
      end
    end
  end

  -- Expressions
  local function expr(n, idx)
    local h = home[n]
    if h then return { k = "load", buf = h, index = flat(n.shape, idx) } end
    local def = ops[n.op]
    if n.op == "const" then return { k = "num", v = n.attr.value } end
    if def.kind == "elementwise" then
      local args = {}
      for i, a in ipairs(n.args) do args[i] = expr(a, idx) end
      return { k = "op", op = n.op, attr = n.attr, args = args }
    end
    if def.same_layout and home[n.args[1]] then -- the argument's buffer, same flat offsets
      return { k = "load", buf = home[n.args[1]], index = flat(n.shape, idx) }
    end
    if def.kind == "view" then
      local r, sel = def.read(n, idx, aff)
      if not r then error("lower: %" .. n.id .. " (" .. n.op .. ") read is not affine and its argument is not in memory") end
      local e = expr(n.args[1], r)
      if sel then return { k = "ifzero", index = sel, e = e } end
      return e
    end
    error("lower: %" .. n.id .. " (" .. n.op .. ") must be materialized")
  end

  local function loops_over(shape)
    local loops, idx = {}, {}
    for k, e in ipairs(shape) do
      loops[k] = { var = "i" .. (k - 1), n = e }
      idx[k] = aff.var("i" .. (k - 1))
    end
    return loops, idx
  end

  local nests = {}
  local function nest_for(n, buf)
    local it = n -- materialize through reshapes: iterate over the argument's shape, same flat order
    while it.op == "reshape" and not home[it.args[1]] do it = it.args[1] end
    local loops, idx = loops_over(it.shape)
    local target = { buf = buf, index = flat(it.shape, idx) }
    local body
    if it.op == "sum" then
      local a, red, rvars, aidx, k = it.args[1], {}, {}, {}, 1
      for _, ax in ipairs(it.attr.axes) do red[ax] = true end
      for j, e in ipairs(a.shape) do
        if red[j] then
          local v = "r" .. #rvars
          rvars[#rvars + 1] = { var = v, n = e }
          aidx[j] = aff.var(v)
        else
          aidx[j] = idx[k]; k = k + 1
        end
      end
      body = { k = "reduce", target = target, rvars = rvars, expr = expr(a, aidx) }
    else
      local saved = home[it]
      if it == n then home[it] = nil end -- compute the value, not a load of itself
      body = { k = "store", target = target, expr = expr(it, idx), check = ops[it.op].domain }
      home[it] = saved
    end
    nests[#nests + 1] = { loops = loops, body = body, node = n }
  end
  for _, n in ipairs(G.nodes) do if mat[n] then nest_for(n, home[n]) end end
  for _, c in ipairs(copies) do
    local loops, idx = loops_over(c.node.shape)
    nests[#nests + 1] = { loops = loops, node = c.node,
      body = { k = "store", target = { buf = c.buf, index = flat(c.node.shape, idx) }, expr = expr(c.node, idx) } }
  end

  return { nests = nests, params = params, ws_bufs = ws_bufs, ws_size = lower.plan_workspace(nests, ws_bufs) }
end

---------------------------------------------------------------------------------------------
-- Workspace plan: a buffer is live from the nest that writes it to the last nest that reads it.

-- What an expression reads: every load (buffer and index), or the set of buffers.
local function loads(e, acc)
  if e.k == "load" then acc[#acc + 1] = e
  elseif e.k == "op" then for _, a in ipairs(e.args) do loads(a, acc) end
  elseif e.k == "ifzero" then loads(e.e, acc) end
  return acc
end
lower.loads = loads

local function reads(e, acc)
  for _, l in ipairs(loads(e, {})) do acc[l.buf] = true end
  return acc
end
lower.reads = reads

function lower.plan_workspace(nests, bufs)
  local last = {}
  for i, nest in ipairs(nests) do
    for b in pairs(reads(nest.body.expr, {})) do last[b] = i end
  end
  local free, high = {}, 0 -- free: sorted list of {start, size}
  local function alloc(size)
    for i, f in ipairs(free) do
      if f.size >= size then
        local start = f.start
        f.start, f.size = f.start + size, f.size - size
        if f.size == 0 then table.remove(free, i) end
        return start
      end
    end
    local start = high
    high = high + size
    return start
  end
  local function release(b)
    free[#free + 1] = { start = b.base, size = b.size }
    table.sort(free, function(x, y) return x.start < y.start end)
    local merged = {}
    for _, f in ipairs(free) do
      local m = merged[#merged]
      if m and m.start + m.size == f.start then m.size = m.size + f.size else merged[#merged + 1] = f end
    end
    free = merged
    if #free > 0 and free[#free].start + free[#free].size == high then
      high = free[#free].start
      free[#free] = nil
    end
  end
  local peak = 0
  local ending = {}
  for i, nest in ipairs(nests) do
    local b = nest.body.target.buf
    if b.cname == "ws" and b.base == nil then
      b.base = alloc(b.size)
      peak = math.max(peak, high)
      local e = last[b] or i
      ending[e] = ending[e] or {}
      table.insert(ending[e], b)
    end
    for _, dead in ipairs(ending[i] or {}) do release(dead) end
  end
  return peak
end

return lower
