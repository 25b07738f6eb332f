-- loops: the loop IR, between lower and emit_c. One place for its shape, its checker and its
-- dump (--dump-ir loops, --check-ir).
--
-- A function is { params = {buf...}, bufs = {buf...}, body = {stmt...}, ws_size }. Statements:
--   { k = "loop", var = "i0", n = 64, body = {stmt...} }    for (int i0 = 0; i0 < 64; ++i0)
--        lanes = true: a reduce's lane loop (block.lua), always written out (schedule.lua)
--   { k = "store", target = ref, expr = e, check = c }        target = e
--   { k = "reduce", target = ref, rvars = {{var, n}...}, lanes = L, expr = e, check = c }
--        jammed = true: one of several independent reduces sharing a lane loop (block.lua);
--        crowded = true: fewer jammed than block.JAM, their rows crowding an L1 set
--        product = true: the terms are a matrix product's (x[r][i] w[o][i], lower.lua); under
--        the fma option they fuse into the lanes however long the sum (emit_c.lua)
--        target = the sum of e over the rvars (outermost first). Lane l sums, in iteration
--        order, the terms whose innermost rvar index j has j % L == l; the lanes are then
--        combined by the fixed pairwise tree of emit_c (width w -> ceil(w/2): lane[i] +=
--        lane[i + ceil(w/2)]). L = min(lanes of the dtype, extent of the innermost rvar).
--        lanes_out = true: a slice of a longer sum (block.lua's chunks): no tree, the lanes are
--        stored to the L elements target[index + l]; lanes_in = true (every slice but the
--        first): they also start from those elements instead of 0
--   { k = "accum", target = ref, expr = e, combine = c }      target = c(target, e) (terms in loop order)
-- A statement of the function's body may carry guard = a C preprocessor condition ("KG_WIDE",
-- "!KG_WIDE && KG_TILE_LANES"...): forms of one nest, the same results, of which the
-- preprocessor keeps one (block.lua, emit_c.lua).
-- combine: "add" (a sum; the default) or "maximum" (ops.lua); a reduce folds its lanes with it.
-- check: nil, "positive" or "finite" (a domain hypothesis checked at run time, ops.domain).
-- ref = { buf = buf, index = affine }; buf = { cname, size, role = "param"|"ws"|"local", ... }.
-- Expressions: { k = "load", buf, index } | { k = "num", v } | { k = "op", op, attr, args }
--   | { k = "ifzero", index, e } (e where index == 0, else 0)
--   | { k = "tree", terms = {e...}, combine = c } (the terms folded by the fixed pairwise tree).
-- Affine index forms { c = int, t = {var = coef} } keep addresses foldable when unrolled.
--
-- The summation order of every output is fixed here, whatever the loop structure around it:
-- a reduce statement's lanes and tree, or an accumulation's loop order. Passes after lower
-- (fuse, schedule) may move statements between loops, unroll loops and shrink buffers, but
-- never change an expression or the order of the terms added to one target, so results do not
-- depend on fusion, unrolling or the C compiler.

local util = require("util")

local loops = {}

---------------------------------------------------------------------------------------------
-- Affine index forms

local aff = {}
loops.aff = aff
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
-- a with variable `from` renamed to `to` (or replaced by an affine form `to`)
function aff.subst(a, from, to)
  local k = a.t[from]
  if not k then return a end
  local r = { c = a.c, t = {} }
  for v, x in pairs(a.t) do if v ~= from then r.t[v] = x end end
  if type(to) == "string" then to = aff.var(to) end
  return aff.add(r, aff.scale(to, k))
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
-- The C text of a + base under env, without building intermediate forms (emit_c's hot path,
-- called for every load of every unrolled term). Each form's variables are sorted once (the
-- order aff.str prints them in); when env maps them to integers or nothing, the text is built
-- directly, and an env holding affine forms takes the general path below.
local sorted_vars = setmetatable({}, { __mode = "k" })
-- a with env's values substituted (numbers, or affine forms of a lane or strip-mined loop's
-- variable): the constant, and the symbolic terms left (nil when there are none)
function aff.resolve(a, env)
  local c, sym = a.c, nil
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
  if sym then
    for v, k in pairs(sym) do if k == 0 then sym[v] = nil end end
    if next(sym) == nil then sym = nil end
  end
  return c, sym
end

local function general_render(a, base, env)
  local c, sym = aff.resolve(a, env)
  if not sym then return tostring(c + base) end
  return aff.str({ c = c + base, t = sym })
end
function aff.render(a, base, env)
  local t = a.t
  local vars = sorted_vars[t]
  if not vars then
    vars = {}
    for v in pairs(t) do vars[#vars + 1] = v end
    table.sort(vars)
    sorted_vars[t] = vars
  end
  local c, text = a.c + base, nil
  for i = 1, #vars do
    local v = vars[i]
    local k, x = t[v], env[v]
    if x == nil then
      if k ~= 0 then
        local part = k == 1 and v or (tostring(k) .. " * " .. v)
        text = text and (text .. " + " .. part) or part
      end
    elseif type(x) == "number" then
      c = c + k * x
    else
      return general_render(a, base, env)
    end
  end
  if not text then return tostring(c) end
  if c ~= 0 then return text .. " + " .. tostring(c) end
  return text
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

-- Smallest and largest value of a over the ranges (var -> extent, values 0..n-1).
function aff.bounds(a, ranges)
  local lo, hi = a.c, a.c
  for v, k in pairs(a.t) do
    local n = ranges[v]
    if not n then return nil end
    if k > 0 then hi = hi + k * (n - 1) else lo = lo + k * (n - 1) end
  end
  return lo, hi
end

---------------------------------------------------------------------------------------------
-- Walking

-- A copy of e with every index passed through index(idx) and every load (after its index)
-- through load(l), which may return another expression (default: the load itself).
function loops.map_expr(e, index, load)
  if e.k == "load" then
    local l = { k = "load", buf = e.buf, index = index(e.index) }
    return load and load(l) or l
  elseif e.k == "op" then
    local args = {}
    for i, a in ipairs(e.args) do args[i] = loops.map_expr(a, index, load) end
    return { k = "op", op = e.op, attr = e.attr, args = args }
  elseif e.k == "ifzero" then
    return { k = "ifzero", index = index(e.index), e = loops.map_expr(e.e, index, load) }
  elseif e.k == "tree" then
    local terms = {}
    for i, t in ipairs(e.terms) do terms[i] = loops.map_expr(t, index, load) end
    return { k = "tree", terms = terms, combine = e.combine }
  end
  return e
end

-- The stride of v in index, when every value of index lies in [base + stride*v, base +
-- stride*v + stride) for the ranges of the variables inside v's loop, base being the terms of
-- the enclosing loops' variables (fixed while v runs; canonical names make them the same in
-- the loops that fuse); else nil. Also returns base as a key, to compare two accesses. For
-- fuse.lua's fusion and block.lua's rows side by side (each iteration's own row).
function loops.slab(index, v, ranges)
  local st = index.t[v]
  if not st or st <= 0 then return nil end
  local rest, base = { c = index.c, t = {} }, {}
  for x, k in pairs(index.t) do
    if x ~= v then
      if ranges[x] then rest.t[x] = k else base[#base + 1] = x .. "*" .. k end
    end
  end
  local lo, hi = aff.bounds(rest, ranges)
  if not lo or lo < 0 or hi >= st then return nil end
  table.sort(base)
  return st, table.concat(base, "+")
end

-- Do reduces a and b sum over the same loops with the same lanes (emit_c may run them in one
-- lane loop)?
function loops.same_sum(a, b)
  if #a.rvars ~= #b.rvars or a.lanes ~= b.lanes then return false end
  for i, r in ipairs(a.rvars) do if r.var ~= b.rvars[i].var or r.n ~= b.rvars[i].n then return false end end
  return true
end

-- The loads of an expression (appended to acc).
function loops.loads(e, acc)
  if e.k == "load" then acc[#acc + 1] = e
  elseif e.k == "op" then for _, a in ipairs(e.args) do loops.loads(a, acc) end
  elseif e.k == "ifzero" then loops.loads(e.e, acc)
  elseif e.k == "tree" then for _, t in ipairs(e.terms) do loops.loads(t, acc) end end
  return acc
end

-- The buffers statements under body read and write, added to the sets r and w (buffer ->
-- true): accesses() without the records, for the passes that only ask which buffers.
local function bufs_of(e, r)
  if e.k == "load" then r[e.buf] = true
  elseif e.k == "op" then local a = e.args; for i = 1, #a do bufs_of(a[i], r) end
  elseif e.k == "ifzero" then bufs_of(e.e, r)
  elseif e.k == "tree" then local t = e.terms; for i = 1, #t do bufs_of(t[i], r) end end
end
function loops.touches(body, r, w)
  for i = 1, #body do
    local s = body[i]
    if s.k == "loop" then
      loops.touches(s.body, r, w)
    else
      w[s.target.buf] = true
      if s.k == "accum" or s.lanes_in then r[s.target.buf] = true end
      bufs_of(s.expr, r)
    end
  end
  return r, w
end

-- Calls fn(stmt, ranges) for every statement under body (loops included, before their body);
-- ranges maps the enclosing loop variables (and a reduce's rvars, for its expression) to
-- their extents.
function loops.walk(body, fn, ranges)
  ranges = ranges or {}
  for _, s in ipairs(body) do
    fn(s, ranges)
    if s.k == "loop" then
      ranges[s.var] = s.n
      loops.walk(s.body, fn, ranges)
      ranges[s.var] = nil
    end
  end
end

-- Every access under body: { buf, index, write = bool, stmt, ranges }, in statement order.
-- ranges (the enclosing loops' and the statement's own rvars' extents) is read only: the
-- statements of one loop body without rvars share one table.
function loops.accesses(body)
  local out = {}
  local function visit(list, ranges)
    for _, s in ipairs(list) do
      if s.k == "loop" then
        local inner = {}
        for v, n in pairs(ranges) do inner[v] = n end
        inner[s.var] = s.n
        visit(s.body, inner)
      else
        local r = ranges
        if s.rvars and #s.rvars > 0 then
          r = {}
          for v, n in pairs(ranges) do r[v] = n end
          for _, rv in ipairs(s.rvars) do r[rv.var] = rv.n end
        end
        out[#out + 1] = { buf = s.target.buf, index = s.target.index, write = true, stmt = s, ranges = r }
        if s.k == "accum" or s.lanes_in then out[#out + 1] = { buf = s.target.buf, index = s.target.index, stmt = s, ranges = r } end
        for _, l in ipairs(loops.loads(s.expr, {})) do
          out[#out + 1] = { buf = l.buf, index = l.index, stmt = s, ranges = r }
        end
      end
    end
  end
  visit(body, {})
  return out
end

---------------------------------------------------------------------------------------------
-- Checker and dump

-- Every index stays inside its buffer, every variable is bound by an enclosing loop (or the
-- reduce), loop variables are not rebound, extents are positive.
function loops.verify(F, pass)
  local function fail(msg) error("loop IR check after " .. (pass or "?") .. ": " .. msg, 0) end
  local function check_body(body, ranges)
    for _, s in ipairs(body) do
      if s.k == "loop" then
        if ranges[s.var] then fail("loop variable " .. s.var .. " bound twice") end
        if math.type(s.n) ~= "integer" or s.n < 1 then fail("loop " .. s.var .. " has extent " .. tostring(s.n)) end
        ranges[s.var] = s.n
        check_body(s.body, ranges)
        ranges[s.var] = nil
      elseif s.k == "store" or s.k == "reduce" or s.k == "accum" then
        if s.k == "reduce" then
          for _, rv in ipairs(s.rvars) do ranges[rv.var] = rv.n end
          if not (s.lanes and s.lanes >= 1) then fail("reduce without lanes") end
          if s.lanes_in and not s.lanes_out then fail("reduce loads its lanes but does not store them") end
        end
        local last = s.lanes_out and aff.add(s.target.index, aff.const(s.lanes - 1)) -- the carried lanes
        local refs = loops.loads(s.expr, { { buf = s.target.buf, index = s.target.index }, last and { buf = s.target.buf, index = last } })
        for i, ref in ipairs(refs) do
          local what = ((i == 1 or last and i == 2) and "target " or "load ") .. ref.buf.cname .. "[" .. aff.str(ref.index) .. "]"
          local lo, hi = aff.bounds(ref.index, ranges)
          if not lo then fail(what .. ": unbound variable") end
          if lo < 0 or hi >= ref.buf.size then
            fail(what .. " reaches " .. lo .. ".." .. hi .. ", outside [0, " .. ref.buf.size .. ")")
          end
        end
        if s.k == "reduce" then for _, rv in ipairs(s.rvars) do ranges[rv.var] = nil end end
      else
        fail("unknown statement kind " .. tostring(s.k))
      end
    end
  end
  check_body(F.body, {})
end

local function ref_str(buf, index)
  local name = buf.cname
  if buf.role == "ws" then name = "ws" .. buf.id end
  return name .. "[" .. aff.str(index) .. "]"
end

local function expr_str(e)
  if e.k == "load" then return ref_str(e.buf, e.index) end
  if e.k == "num" then return util.num_str(e.v) end
  if e.k == "ifzero" then return "(" .. aff.str(e.index) .. " == 0 ? " .. expr_str(e.e) .. " : 0)" end
  local parts = {}
  for i, a in ipairs(e.args or e.terms) do parts[i] = expr_str(a) end
  return (e.op or "tree") .. "(" .. table.concat(parts, ", ") .. ")"
end

-- Text dump, one statement per line, loops indented.
function loops.dump(F, title)
  local out = { "# " .. title }
  for _, b in ipairs(F.bufs) do
    out[#out + 1] = util.format("buffer %s [%d] %s%s", b.role == "ws" and ("ws" .. b.id) or b.cname, b.size,
      b.role, b.base and (" at " .. b.base) or "")
  end
  local function body(list, depth)
    local pad = string.rep("  ", depth)
    for _, s in ipairs(list) do
      if s.guard then out[#out + 1] = pad .. "#if " .. s.guard end
      if s.k == "loop" then
        out[#out + 1] = pad .. "for " .. s.var .. " < " .. s.n
        body(s.body, depth + 1)
      else
        local op = s.k == "accum" and " += " or " = "
        local rv = ""
        if s.k == "reduce" then
          local v = {}
          for i, r in ipairs(s.rvars) do v[i] = r.var .. " < " .. r.n end
          rv = "sum[" .. table.concat(v, ", ") .. "; lanes " .. s.lanes .. (s.lanes_in and ", carried" or s.lanes_out and ", stored" or "") .. "] "
        end
        out[#out + 1] = pad .. ref_str(s.target.buf, s.target.index) .. op .. rv .. expr_str(s.expr)
          .. (s.check and ("  ; check " .. s.check) or "")
      end
    end
  end
  body(F.body, 0)
  return table.concat(out, "\n") .. "\n"
end

return loops
