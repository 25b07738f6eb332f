-- lower: graph IR -> loop IR (gen/loops.lua), one statement list per stored node.
--
-- Takes a simplified graph and decides which nodes live in memory ("materialized"): reductions,
-- nodes with domain checks, outputs, computed arguments of broadcasts (reading them through a
-- broadcast would repeat their work), arguments of reshapes that merge axes, and elementwise
-- nodes whose inlined expression is costly and used more than once. Every other node is fused
-- into its consumers' expressions, so intermediates stay out of memory.
--
-- Each stored node becomes loops over its shape around one store, except sums, which walk their
-- argument in memory order (the order the generator owns, see loops.lua):
--   row form      every kept axis is outside every summed one (a row's sum: layernorm's mean):
--                 loops over the kept axes around one reduce statement (lanes on the innermost
--                 summed axis);
--   column form   some kept axis is inside a summed one (dgamma = sum over rows): loops over
--                 the argument's axes in order around an accumulation, vectorizable across the
--                 kept inner axes. When the innermost axis is summed too (GroupNorm's channels of
--                 a group), the terms go to lanes by that axis, in a small accumulator, and the
--                 lanes are combined by the same tree as a reduce statement.
-- Zeroing an accumulation's target is a statement of its own, marked init (fuse may move it).

local ops = require("ops")
local util = require("util")
local loops = require("loops")

local aff = loops.aff

local lower = {}

lower.LANES = { f32 = 16, f64 = 8 }

local function flat(shape, idx) -- the sum of idx[k] * stride[k], built in place
  local st, c, t = util.strides(shape), 0, {}
  for k = 1, #shape do
    local a, s = idx[k], st[k]
    c = c + a.c * s
    if s ~= 0 then
      for v, x in pairs(a.t) do
        local y = (t[v] or 0) + x * s
        if y == 0 then y = nil end
        t[v] = y
      end
    end
  end
  return { c = c, t = t }
end

---------------------------------------------------------------------------------------------
-- Parameters (the kernel's arguments) in a fixed order: inputs as created, then outputs.

local roles = require("roles")

local function param(name, role, shape, const)
  return { cname = name .. roles[role].cname, name = name, role = "param", arg_role = role, shape = shape,
    count = util.count(shape), size = util.count(shape), const = const, base = 0 }
end

-- A baked input (op "table") is read from a static const table at file scope, not from an
-- argument: a buffer of its own role, never workspace, never contracted. pipeline names it
-- (cname) and emit_c defines it.
local function table_buf(n)
  return { cname = n.attr.name, name = n.attr.name, role = "table", shape = n.shape, count = util.count(n.shape),
    size = util.count(n.shape), values = n.attr.values }
end

---------------------------------------------------------------------------------------------

local function loop(var, n, body) return { k = "loop", var = var, n = n, body = body } end

-- Wraps stmt in loops over vars (outermost first): vars = {{var, n}...}.
local function nest(vars, stmts)
  for k = #vars, 1, -1 do stmts = { loop(vars[k].var, vars[k].n, stmts) } end
  return stmts
end

-- Every index in e (loads and ifzero selectors).
local function each_index(e, fn)
  if e.k == "load" then e.index = fn(e.index)
  elseif e.k == "op" then for _, a in ipairs(e.args) do each_index(a, fn) end
  elseif e.k == "ifzero" then e.index = fn(e.index); each_index(e.e, fn) end
end

-- Adjacent summed axes that every index reads in row-major order (coefficient of the outer =
-- extent of the inner x coefficient of the inner) become one axis: a BatchNorm's h and w, a
-- flattened block. The lanes of a sum then spread over the whole extent (16 lanes over h*w,
-- not over a short w), the order being memory order still.
local function coalesce_rvars(rvars, e)
  local k = #rvars - 1
  while k >= 1 do
    local a, b = rvars[k], rvars[k + 1]
    local ok = true
    each_index(e, function(idx)
      if (idx.t[a.var] or 0) ~= (idx.t[b.var] or 0) * b.n then ok = false end
      return idx
    end)
    if ok then
      each_index(e, function(idx)
        local r = { c = idx.c, t = {} }
        for v, c in pairs(idx.t) do if v ~= a.var then r.t[v] = c end end
        r.t[b.var] = idx.t[b.var] -- coef_b * (n_b * i_a + i_b): the merged axis keeps b's name
        return r
      end)
      b.n = a.n * b.n
      table.remove(rvars, k)
    end
    k = k - 1
  end
  return rvars, e
end

function lower.run(G, dtype)
  local uses = G:uses()
  local params, bufs = {}, {}
  local home = {} -- node -> buffer it can be loaded from (flat, in the node's own shape)
  local inplace = {} -- "role name" -> the parameter an in-place output writes (roles.lua)
  for _, io in ipairs(G.inputs) do
    local p = param(io.name, io.role, io.node.shape, not roles[io.role].inplace)
    p.fields = io.node.attr.fields
    params[#params + 1] = p
    home[io.node] = p
    if roles[io.role].inplace then inplace[io.role .. " " .. io.name] = p end
  end
  local tables = {}
  for _, n in ipairs(G.nodes) do
    if n.op == "table" then tables[#tables + 1] = table_buf(n); home[n] = tables[#tables] end
  end
  local out_param, copies, cnames = {}, {}, {}
  local function unique(p)
    if util.c_reserved(p.cname) or not util.is_tensor_name(p.cname) then -- spec.lua checked the names
      util.fail("argument name " .. p.cname .. " (" .. p.arg_role .. " of " .. p.name .. ") is reserved in generated C")
    end
    if cnames[p.cname] then
      util.fail("argument name " .. p.cname .. " is used twice (" .. cnames[p.cname] .. " and " .. p.arg_role .. " of " .. p.name .. ")")
    end
    cnames[p.cname] = p.arg_role .. " of " .. p.name
  end
  for _, p in ipairs(params) do unique(p) end
  for _, o in ipairs(G.outputs) do
    local p = inplace[o.role .. " " .. o.name]
    if not p then
      p = param(o.name, o.role, o.node.shape, false)
      unique(p)
      params[#params + 1] = p
    end
    if home[o.node] == p then -- unchanged in place: nothing to write
    elseif out_param[o.node] or home[o.node] or o.node.op == "const" then
      copies[#copies + 1] = { node = o.node, buf = p }
    else
      out_param[o.node] = p
    end
  end
  -- An output that is a view with its argument's layout (GroupNorm's y, a reshape of the
  -- grouped result) has its computed argument stored in the output itself, not copied there.
  for _, o in ipairs(G.outputs) do
    local base = o.node
    while ops[base.op].same_layout do base = base.args[1] end
    if out_param[o.node] and base ~= o.node and not home[base] and not out_param[base] and base.op ~= "const" then
      out_param[base] = out_param[o.node]
    end
  end
  local function ws_buf(size, name)
    local b = { cname = "ws", role = "ws", size = size, id = #bufs, name = name }
    bufs[#bufs + 1] = b
    return b
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
  local mat, cost = {}, {}
  local function materialize(n)
    mat[n] = true
    cost[n] = 0
    home[n] = out_param[n] or ws_buf(util.count(n.shape), n.name)
  end
  for _, n in ipairs(G.nodes) do
    local def = ops[n.op]
    if def.kind == "leaf" then
      cost[n] = 0
    elseif def.kind == "view" then
      local a = n.args[1]
      if home[a] and def.same_layout and (not out_param[n] or home[a] == out_param[n]) then
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
      -- used twice and dearer than a division: stored (a division or less is recomputed, which
      -- costs about what a row of workspace written and read back does, and saves the row)
      if def.domain or forced[n] or out_param[n] or ((uses[n.id] or 0) > 1 and c > 4) or c > 40 then
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

  local function vars_over(shape, prefix)
    local vars, idx = {}, {}
    for k, e in ipairs(shape) do
      vars[k] = { var = prefix .. (k - 1), n = e }
      idx[k] = aff.var(prefix .. (k - 1))
    end
    return vars, idx
  end

  local body = {}
  local function add(stmts, node)
    loops.walk(stmts, function(s) s.node = node end)
    for _, s in ipairs(stmts) do body[#body + 1] = s end
  end

  -- Are the terms products of two loads, one of them the same for two outputs (x[r][i] w[o][i]:
  -- w for every r)? A matrix product, which block.lua jams (reduce.product, loops.lua).
  local function matrix_product(e, outer)
    if #outer < 2 or e.k ~= "op" or e.op ~= "mul" or e.args[1].k ~= "load" or e.args[2].k ~= "load" then return nil end
    for _, a in ipairs(e.args) do
      for _, v in ipairs(outer) do if not a.index.t[v.var] then return true end end
    end
    return nil
  end

  -- A reduction in memory order of its argument (the forms in the header). A sum starts from
  -- zero; other combines (maximum) start from the first term and then fold every term,
  -- that first one again (maximum(x, x) = x), so no neutral value (-inf) is needed.
  local function lower_sum(n, it, target_buf)
    local combine = ops[it.op].combine
    local a, red = it.args[1], {}
    for _, ax in ipairs(it.attr.axes) do red[ax] = true end
    local first_red
    for j = 1, #a.shape do if red[j] and not first_red then first_red = j end end
    local aidx, outer, kept_inner, inner_vars, kept_idx = {}, {}, {}, {}, {}
    local nk, nr = 0, 0
    for j, e in ipairs(a.shape) do
      local v
      if red[j] then v = "r" .. nr; nr = nr + 1 else v = "i" .. nk; nk = nk + 1 end
      aidx[j] = aff.var(v)
      if not red[j] then kept_idx[#kept_idx + 1] = aff.var(v) end
      if j < first_red then
        outer[#outer + 1] = { var = v, n = e }
      else
        inner_vars[#inner_vars + 1] = { var = v, n = e, red = red[j] }
        if not red[j] then kept_inner[#kept_inner + 1] = { var = v, n = e } end
      end
    end
    local target = { buf = target_buf, index = flat(it.shape, kept_idx) }
    local last = #a.shape
    local lanes = red[last] and math.min(lower.LANES[dtype], a.shape[last]) or 1
    local e = expr(a, aidx)
    if #kept_inner == 0 then -- row form
      local rvars = {}
      for _, v in ipairs(inner_vars) do rvars[#rvars + 1] = { var = v.var, n = v.n } end
      rvars, e = coalesce_rvars(rvars, e)
      lanes = math.min(lower.LANES[dtype], rvars[#rvars].n)
      add(nest(outer, { { k = "reduce", target = target, rvars = rvars, lanes = lanes, expr = e, combine = combine,
        product = matrix_product(e, outer) } }), n)
      return
    end
    -- column form: the first term of each output (every summed index 0, the innermost one l
    -- for lane l) for a combine other than add
    local function first_term(lane_var)
      local idx = {}
      for j = 1, #a.shape do
        idx[j] = aidx[j]
        if red[j] then idx[j] = (j == #a.shape and lane_var) and aff.var(lane_var) or aff.const(0) end
      end
      return expr(a, idx)
    end
    if lanes == 1 then -- accumulate into the target itself
      local start = combine == "add" and { k = "num", v = 0 } or first_term(nil)
      local init = nest(outer, nest(kept_inner, { { k = "store", target = target, expr = start } }))
      init[1].init = true
      add(init, n)
      add(nest(outer, nest(inner_vars, { { k = "accum", target = target, expr = e, combine = combine } })), n)
      return
    end
    -- lanes by the innermost (summed) axis, in an accumulator acc[kept inner][lane]
    local count = 1
    for _, v in ipairs(kept_inner) do count = count * v.n end
    local acc = ws_buf(count * lanes, n.name and (n.name .. "_lanes"))
    local kflat = aff.const(0)
    for _, v in ipairs(kept_inner) do kflat = aff.add(aff.scale(kflat, v.n), aff.var(v.var)) end
    local lane_base = aff.scale(kflat, lanes)
    local stmts = nest(kept_inner, nest({ { var = "l", n = lanes } },
      { { k = "store", target = { buf = acc, index = aff.add(lane_base, aff.var("l")) },
        expr = combine == "add" and { k = "num", v = 0 } or first_term("l") } }))
    stmts[1].init = true
    local jv, jn = inner_vars[#inner_vars].var, inner_vars[#inner_vars].n
    local mids = {}
    for k = 1, #inner_vars - 1 do mids[k] = inner_vars[k] end
    local main = jn - jn % lanes
    -- the innermost axis j as blocks of lanes (j = lanes * jb + l), then its tail (j = main + l)
    local function accumulate(j_form, lane_vars)
      local idx = {}
      for j = 1, #a.shape do idx[j] = aff.subst(aidx[j], jv, j_form) end
      local acc_index = aff.add(lane_base, aff.var("l"))
      return nest(lane_vars, { { k = "accum", target = { buf = acc, index = acc_index }, expr = expr(a, idx), combine = combine } })
    end
    local sweep = {}
    if main > 0 then
      sweep[#sweep + 1] = accumulate(aff.add(aff.scale(aff.var("jb"), lanes), aff.var("l")),
        { { var = "jb", n = main // lanes }, { var = "l", n = lanes } })[1]
    end
    if jn % lanes > 0 then
      sweep[#sweep + 1] = accumulate(aff.add(aff.const(main), aff.var("l")), { { var = "l", n = jn % lanes } })[1]
    end
    for _, s in ipairs(nest(mids, sweep)) do stmts[#stmts + 1] = s end
    local terms = {}
    for l = 0, lanes - 1 do terms[l + 1] = { k = "load", buf = acc, index = aff.add(lane_base, aff.const(l)) } end
    for _, s in ipairs(nest(kept_inner, { { k = "store", target = target, expr = { k = "tree", terms = terms, combine = combine } } })) do
      stmts[#stmts + 1] = s
    end
    add(nest(outer, stmts), n)
  end

  for _, n in ipairs(G.nodes) do
    if mat[n] then
      local it = n -- materialize through reshapes: iterate over the argument's shape, same flat order
      while it.op == "reshape" and not home[it.args[1]] do it = it.args[1] end
      if ops[it.op].kind == "reduce" then
        lower_sum(n, it, home[n])
      else
        local vars, idx = vars_over(it.shape, "i")
        local saved = home[it]
        if it == n then home[it] = nil end -- compute the value, not a load of itself
        local s = { k = "store", target = { buf = home[n] or saved, index = flat(it.shape, idx) }, expr = expr(it, idx),
          check = ops[it.op].domain }
        home[it] = saved
        add(nest(vars, { s }), n)
      end
    end
  end
  for _, c in ipairs(copies) do
    local vars, idx = vars_over(c.node.shape, "i")
    add(nest(vars, { { k = "store", target = { buf = c.buf, index = flat(c.node.shape, idx) }, expr = expr(c.node, idx) } }),
      c.node)
  end

  return { params = params, bufs = bufs, body = body, tables = tables }
end

return lower
