-- emit_c: loop IR (loops.lua) -> C99 text. Lines go into a table with an indent counter and
-- are joined once.
--
-- Guarantees the generated-code contract: C99, no allocation, no globals but the static const
-- tables of baked inputs, no I/O; restrict pointers, const inputs; literals that round-trip
-- (util.c_literal); names and order fixed by
-- the IR, so the same request gives the same bytes. The summation order comes from the IR: a
-- reduce statement's lane accumulators and their fixed pairwise tree are written the same way
-- whether looped or unrolled, an accumulation adds its terms in loop order; C's + and * are
-- left-associative and the right operand is parenthesized at equal precedence, so no compiler
-- may regroup them. Domain checks (ops.domain) set the return code. Helper functions
-- (sqrt_clamp, maximum...) and the math functions of mathfn (exp, erfc, gelu...) are static and
-- emitted only when used; the only libm function called is sqrt.
--
-- The JIT's schedule (unroll auto, F.policy) is written for tcc, which keeps every value in
-- memory: strip-mined loops (schedule.lua), reductions written out lane by lane, accesses through
-- base pointers and invariant loads in const locals (declare_bases). Addresses, statements and
-- their order are those of the other policies, so the bits are too. Beside the loops that
-- x86.lua can write as x86-64 machine code, this policy's text carries that code (#if
-- KG_X86_AVX2 ... #else the C loop #endif), and the C there is the compact one of unroll
-- none (ctx.fallback: loops stay loops, no base pointers, no machine code): it runs only where
-- the machine code cannot, and writing it out for tcc was a quarter to a third of the JIT
-- text's generation time (LayerNorm 8x64, seq_ffn 8x64x256).
--
-- Speed (generation is most of a JIT's latency): an expression compiles once per function into
-- a closure that prints it for any index (compile), so an unrolled loop pays only for its text.

local ops = require("ops")
local util = require("util")
local loops = require("loops")
local roles = require("roles")
local mathfn = require("mathfn")
local lower = require("lower")
local x86 = require("x86")

local aff = loops.aff

local emit = {}

local CTYPE = { f32 = "float", f64 = "double" }
emit.CTYPE = CTYPE
local MAXVAL = { f32 = "3.40282347e+38f", f64 = "1.7976931348623157e+308" }

---------------------------------------------------------------------------------------------
-- Line buffer

local INDENT = setmetatable({}, { __index = function(t, d) t[d] = string.rep("    ", d); return t[d] end })

local function new_out()
  local o = { lines = {}, depth = 0, statements = 0 }
  local lines = o.lines
  function o.line(s)
    lines[#lines + 1] = (s == "" and "" or INDENT[o.depth] .. s)
    if s:byte(-1) == 59 then o.statements = o.statements + 1 end -- ends with ';'
  end
  function o.open(s) o.line(s); o.depth = o.depth + 1 end
  function o.close(s) o.depth = o.depth - 1; o.line(s or "}") end
  function o.text() return table.concat(o.lines, "\n") .. "\n" end
  return o
end

---------------------------------------------------------------------------------------------
-- Expressions. A printed expression is {s, prec}, or the two values s, prec on the hot paths:
-- prec 3 atom, 2.5 unary minus, 2 * /, 1 + -.

local function par(s, prec, min) if prec < min then return "(" .. s .. ")" end return s end
-- left operand keeps C's left-to-right grouping; the right one is parenthesized at equal
-- precedence, because floating-point + and * are not associative
local function infix(as, ap, op, bs, bp, prec)
  return par(as, ap, prec) .. " " .. op .. " " .. par(bs, bp, prec + 0.1), prec
end

-- Workspace buffers are read and written through per-statement restrict pointers (ws_N, see
-- emit_top), so the C compiler knows they do not overlap; parameters by their own names;
-- one-element buffers are C locals, and a reduce's lane accumulators a local array (block.lua).
local function index_str(buf, index, env)
  if buf.role == "local" and buf.size == 1 then return buf.cname end
  local name = buf.role == "ws" and ("ws_" .. buf.id) or buf.cname
  return name .. "[" .. aff.render(index, 0, env) .. "]"
end

-- The pairwise steps that combine L lanes: width w -> ceil(w/2) by lane[i] += lane[i + ceil(w/2)]
-- for i < w - ceil(w/2); levels: per width, { steps = w - ceil(w/2), offset = ceil(w/2) }.
local orders, level_lists = {}, {} -- L -> steps, L -> levels (read only)
local function combine_order(L)
  if orders[L] then return orders[L], level_lists[L] end
  local steps, levels, w = {}, {}, L
  while w > 1 do
    local nw = (w + 1) // 2
    for i = 0, w - nw - 1 do steps[#steps + 1] = { i, i + nw } end
    levels[#levels + 1] = { steps = w - nw, offset = nw }
    w = nw
  end
  orders[L], level_lists[L] = steps, levels
  return steps, levels
end

-- Fused multiply-adds (the request's fma option, ctx.fma): a product printed under it also
-- gives its two factors (a table {x, xprec, y, yprec}), and a sum or difference with a product
-- operand is printed as fma(x, y, c), the product kept exact and the result rounded once
-- (C99's fma and fmaf are specified that way, so every compiler and libm that implements them
-- correctly gives the same bits). Which operand fuses is fixed: the left one if it is a product,
-- else the right one; a reduction's term fuses into its accumulator.
local FMA = mathfn.FMA
emit.FMA_CHAIN = 16 -- steps per lane up to which a reduce's terms fuse into their accumulator
emit.ARGS_MAX = 128 -- parameters of a generated function (pipeline refuses kernels beyond it)
local function fused(ctx, fac, cs)
  return FMA[ctx.dtype] .. "(" .. fac[1] .. ", " .. fac[3] .. ", " .. cs .. ")", 3
end
local function negated(s, p) return "-" .. par(s, p, 3) end

-- Two printed partial results folded by a reduction's combine: + for a sum, else the op's
-- helper (kg_maximum_f32...). afac, bfac: their factors when they are products (ctx.fma).
local function fold(combine, as, ap, bs, bp, ctx, afac, bfac)
  if (combine or "add") == "add" then
    if bfac then return fused(ctx, bfac, as) end
    if afac then return fused(ctx, afac, bs) end
    return infix(as, ap, "+", bs, bp, 1)
  end
  local name = "kg_" .. combine .. "_" .. ctx.dtype
  ctx.helpers[name] = { op = combine, dtype = ctx.dtype }
  return name .. "(" .. as .. ", " .. bs .. ")", 3
end

-- The n printed terms ss[0..n-1], ps[0..n-1] (factors fs[0..n-1], optional) folded in place
-- by the fixed tree.
local function tree(ss, ps, n, combine, ctx, fs)
  fs = fs or {}
  for _, st in ipairs(combine_order(n)) do
    local i, j = st[1], st[2]
    ss[i], ps[i] = fold(combine, ss[i], ps[i], ss[j], ps[j], ctx, fs[i], fs[j])
    fs[i] = nil
  end
  return ss[0], ps[0]
end

-- An expression compiles once (per function) into a closure f(env, ctx) -> s, prec: an
-- unrolled loop prints the same expression for every index, and only its indices change, so
-- the op table, the literals and the order of each index's variables are looked up once.
-- Helpers are registered when printed, as the expression would be: an ifzero's operand only
-- when it is printed, and compiled then.
local compile

-- A load, or a statement's target (ref, never hoisted). Under a base pointer of the buffer and
-- the index's symbolic part (declare_bases), the access is base[constant].
local function compile_load(e, ref)
  local buf, index = e.buf, e.index
  if buf.role == "local" and buf.size == 1 then
    if ref then return function() return buf.cname, 3 end end
    return function(_, ctx) local s = buf.cname; return ctx.hoisted[s] or s, 3 end
  end
  local open = (buf.role == "ws" and ("ws_" .. buf.id) or buf.cname) .. "["
  local vars, ks, parts, c0 = {}, {}, {}, index.c
  for v in pairs(index.t) do vars[#vars + 1] = v end
  table.sort(vars) -- aff.str's order
  for i, v in ipairs(vars) do
    local k = index.t[v]
    ks[i] = k
    parts[i] = k ~= 0 and (k == 1 and v or (tostring(k) .. " * " .. v))
  end
  local nv = #vars
  -- env holds an affine form (a lane or strip-mined loop: i1 + 3): merge the forms
  local function general(env)
    local c, sym = aff.resolve(index, env)
    if not sym then return c, nil end
    local names = {}
    for v in pairs(sym) do names[#names + 1] = v end
    table.sort(names)
    for i, v in ipairs(names) do
      local k = sym[v]
      names[i] = k == 1 and v or (tostring(k) .. " * " .. v)
    end
    return c, table.concat(names, " + ")
  end
  return function(env, ctx)
    local c, text = c0, nil
    for i = 1, nv do
      local x = env[vars[i]]
      if x == nil then
        local p = parts[i]
        if p then text = text and (text .. " + " .. p) or p end
      elseif type(x) == "number" then
        c = c + ks[i] * x
      else
        c, text = general(env)
        break
      end
    end
    if not text then
      local s = open .. tostring(c) .. "]"
      if ref then return s, 3 end
      return ctx.hoisted[s] or s, 3
    end
    if not ref then
      local s = c ~= 0 and (open .. text .. " + " .. tostring(c) .. "]") or (open .. text .. "]")
      local h = ctx.hoisted[s]
      if h then return h, 3 end
      local b = ctx.bases[buf]
      if not (b and b[text]) then return s, 3 end
    end
    local b = ctx.bases[buf]
    local base = b and b[text]
    if base then return base .. "[" .. tostring(c) .. "]", 3 end
    return c ~= 0 and (open .. text .. " + " .. tostring(c) .. "]") or (open .. text .. "]"), 3
  end
end

local function compile_op(e, dtype, vlane)
  local c = ops[e.op].c
  if not c then error("emit_c: no C form for op " .. e.op) end
  local args = {}
  for i, a in ipairs(e.args) do args[i] = compile(a, dtype, vlane) end
  local a1, a2 = args[1], args[2]
  if c.infix then
    local op, prec = c.infix, c.prec
    if c.lhs then
      local lhs = util.c_literal(c.lhs, dtype) .. " " .. op .. " "
      return function(env, ctx)
        local s, p = a1(env, ctx)
        return lhs .. par(s, p, prec + 0.1), prec
      end
    end
    if op == "*" then
      return function(env, ctx)
        local as, ap = a1(env, ctx)
        local bs, bp = a2(env, ctx)
        local s = par(as, ap, prec) .. " * " .. par(bs, bp, prec + 0.1)
        if ctx.fma then return s, prec, { as, ap, bs, bp } end
        return s, prec
      end
    elseif op == "+" or op == "-" then
      return function(env, ctx)
        local as, ap, afac = a1(env, ctx)
        local bs, bp, bfac = a2(env, ctx)
        if afac then return fused(ctx, afac, op == "+" and bs or negated(bs, bp)) end
        if bfac then
          if op == "+" then return fused(ctx, bfac, as) end
          return fused(ctx, { negated(bfac[1], bfac[2]), 2.5, bfac[3], bfac[4] }, as)
        end
        return par(as, ap, prec) .. " " .. op .. " " .. par(bs, bp, prec + 0.1), prec
      end
    end
    return function(env, ctx)
      local as, ap = a1(env, ctx)
      local bs, bp = a2(env, ctx)
      return par(as, ap, prec) .. " " .. op .. " " .. par(bs, bp, prec + 0.1), prec
    end
  elseif c.prefix then
    local pre = c.prefix
    return function(env, ctx)
      local s, p = a1(env, ctx)
      return pre .. par(s, p, 2.5), 2.5
    end
  end
  local name, h
  if c.math then
    local fn = type(c.math) == "function" and c.math(e.attr) or c.math
    name, h = mathfn.cname(fn, dtype), { math = fn, dtype = dtype }
  elseif c.helper then
    name, h = "kg_" .. e.op .. "_" .. dtype, { op = e.op, dtype = dtype }
  else
    error("emit_c: no C form for op " .. e.op)
  end
  if #args == 1 then
    return function(env, ctx)
      local s = a1(env, ctx)
      ctx.helpers[name] = h
      return name .. "(" .. s .. ")", 3
    end
  end
  return function(env, ctx)
    local strs = {}
    for i, a in ipairs(args) do strs[i] = a(env, ctx) end
    ctx.helpers[name] = h
    return name .. "(" .. table.concat(strs, ", ") .. ")", 3
  end
end

-- vlane: the variable of a vector form's summed loop (emit_vector_reduces): a load along it
-- reads the q-th vector of its lanes.
function compile(e, dtype, vlane)
  if e.k == "load" then
    local f = compile_load(e)
    if not (vlane and e.index.t[vlane]) then return f end
    return function(env, ctx)
      local at = f(env, ctx) -- name[index]: vector q starts KG_VLANES * q further
      return util.format("KG_VLOAD_%s(&%s + KG_VLANES_%s * q])", dtype, at:sub(1, -2), dtype), 3
    end
  end
  if e.k == "num" then
    local s, p = util.c_literal(e.v, dtype), (e.v < 0 or (e.v == 0 and 1 / e.v < 0)) and 2.5 or 3
    return function() return s, p end
  end
  if e.k == "ifzero" then
    local inner, zero = nil, util.c_literal(0, dtype)
    return function(env, ctx)
      local a = aff.eval(e.index, env)
      if next(a.t) == nil then
        if a.c ~= 0 then return zero, 3 end
        inner = inner or compile(e.e, dtype, vlane)
        return inner(env, ctx)
      end
      inner = inner or compile(e.e, dtype, vlane)
      local v = inner(env, ctx)
      return "(" .. aff.str(a) .. " == 0 ? " .. v .. " : " .. zero .. ")", 3
    end
  end
  if e.k == "tree" then
    local fs, n, combine = {}, #e.terms, e.combine
    for i, t in ipairs(e.terms) do fs[i] = compile(t, dtype, vlane) end
    return function(env, ctx)
      local ss, ps, facs = {}, {}, {}
      for i = 1, n do ss[i - 1], ps[i - 1], facs[i - 1] = fs[i](env, ctx) end
      return tree(ss, ps, n, combine, ctx, facs)
    end
  end
  return compile_op(e, dtype, vlane)
end

-- The printer of expression e in this function (compiled on first use).
local function printer(e, ctx)
  local f = ctx.compiled[e]
  if not f then
    f = compile(e, ctx.dtype)
    ctx.compiled[e] = f
  end
  return f
end

function emit.expr(e, env, ctx) return printer(e, ctx)(env, ctx) end

-- The text of a statement's target ref = { buf, index }.
local function target_str(ref, env, ctx)
  local f = ctx.compiled[ref]
  if not f then
    f = compile_load(ref, true)
    ctx.compiled[ref] = f
  end
  return (f(env, ctx))
end

-- Base pointers and invariant loads, for the JIT (unroll auto): in a C loop whose body is
-- straight-line code, the accesses of a buffer that share the symbolic part of their index
-- (the loop variables in scope: x[64 * i0 + 5]) go through one pointer declared at the top of
-- the body (const float *h7 = x + 64 * i0; then h7[5]), and a load that does not change within
-- the body (x[64 * i0], of a buffer the body does not write) becomes a const local declared
-- after them (const float h8 = h7[0];): tcc computes no address arithmetic per access and
-- loads once, and the text is shorter. Addresses and values are unchanged. Bases and loads
-- used once are not declared.
local function base_text(index, env, numeric, scope)
  local vars = {}
  for v, k in pairs(index.t) do
    local x = env[v]
    if type(x) == "table" then return nil end
    if x == nil and not numeric[v] then
      if not scope[v] then return nil end
      if k ~= 0 then vars[#vars + 1] = v end
    end
  end
  if #vars == 0 then return nil end
  table.sort(vars)
  for i, v in ipairs(vars) do
    local k = index.t[v]
    vars[i] = k == 1 and v or (tostring(k) .. " * " .. v)
  end
  return table.concat(vars, " + ")
end

-- body runs copies times per iteration (a strip-mined loop's copies of strip_var: not invariant).
local function declare_bases(out, body, env, ctx, copies, strip_var)
  local accesses, written, numeric = {}, {}, {}
  local loads, lorder = {}, {} -- invariant loads: plain text -> uses; first-use order
  local function note(buf, index, mult, write)
    if buf.role == "local" then return end
    if write then written[buf] = true end
    local a = { buf = buf, index = index, mult = mult, text = base_text(index, env, numeric, ctx.scope) }
    accesses[#accesses + 1] = a
    if not write then
      for v in pairs(index.t) do if numeric[v] or v == strip_var then return end end
      a.key = (buf.role == "ws" and ("ws_" .. buf.id) or buf.cname) .. "[" .. aff.render(index, 0, env) .. "]"
      if not loads[a.key] then lorder[#lorder + 1] = a end
      loads[a.key] = (loads[a.key] or 0) + mult
    end
  end
  -- the loads that are printed (not an ifzero's operand: it may print as 0) and not hoisted
  -- already, so that every declaration is used
  local function printed_loads(e, mult)
    if e.k == "load" then
      local x = e.index.t
      for v in pairs(x) do if numeric[v] or v == strip_var then return note(e.buf, e.index, mult) end end
      local key = (e.buf.role == "ws" and ("ws_" .. e.buf.id) or e.buf.cname) .. "[" .. aff.render(e.index, 0, env) .. "]"
      if not ctx.hoisted[key] then note(e.buf, e.index, mult) end
    elseif e.k == "op" then for _, a in ipairs(e.args) do printed_loads(a, mult) end
    elseif e.k == "tree" then for _, a in ipairs(e.terms) do printed_loads(a, mult) end end
  end
  local function scan(list, mult)
    for _, t in ipairs(list) do
      if t.k == "loop" then
        if t.unroll or t.n == 1 then
          numeric[t.var] = true
          scan(t.body, mult * t.n)
          numeric[t.var] = nil
        end -- a C loop inside declares its own
      else
        note(t.target.buf, t.target.index, mult, true)
        local m = mult
        if t.k == "reduce" then
          if t.unroll then
            for _, r in ipairs(t.rvars) do numeric[r.var] = true; m = m * r.n end
          else
            m = 0
          end
        end
        if m > 0 then printed_loads(t.expr, m) end
        if t.k == "reduce" then for _, r in ipairs(t.rvars) do numeric[r.var] = nil end end
      end
    end
  end
  scan(body, copies or 1)
  -- the invariant loads worth a local, then the uses of each base: an access through it, or
  -- the declaration of such a local
  local hoist = {}
  for _, a in ipairs(lorder) do
    if loads[a.key] >= 2 and not written[a.buf] and not ctx.hoisted[a.key] then hoist[#hoist + 1] = a end
  end
  local uses, order = {}, {}
  local function use(a, n)
    if not a.text then return end
    local u = uses[a.buf] or {}
    uses[a.buf] = u
    if not u[a.text] then order[#order + 1] = a end
    u[a.text] = (u[a.text] or 0) + n
  end
  for _, a in ipairs(accesses) do
    if not (a.key and loads[a.key] >= 2 and not written[a.buf] and not ctx.hoisted[a.key]) then use(a, a.mult) end
  end
  for _, a in ipairs(hoist) do use(a, 1) end
  local bases = {}
  for b, m in pairs(ctx.bases) do
    bases[b] = {}
    for k, v in pairs(m) do bases[b][k] = v end
  end
  local T = CTYPE[ctx.dtype]
  for _, a in ipairs(order) do
    local b = a.buf
    if uses[b][a.text] >= 2 and not (bases[b] and bases[b][a.text]) then
      ctx.nhoist = ctx.nhoist + 1
      local name = "h" .. ctx.nhoist
      bases[b] = bases[b] or {}
      bases[b][a.text] = name
      local const = (b.const or not written[b]) and "const " or ""
      out.line(const .. T .. " *" .. name .. " = " .. (b.role == "ws" and ("ws_" .. b.id) or b.cname) .. " + " .. a.text .. ";")
    end
  end
  ctx.bases = bases
  for _, a in ipairs(hoist) do
    local value = compile_load(a)(env, ctx)
    ctx.nhoist = ctx.nhoist + 1
    ctx.hoisted[a.key] = "h" .. ctx.nhoist
    out.line("const " .. T .. " " .. ctx.hoisted[a.key] .. " = " .. value .. ";")
  end
  return bases
end

---------------------------------------------------------------------------------------------
-- Statements

local function emit_check(out, target, check, dtype)
  if not check then return end
  local v, max = target, MAXVAL[dtype]
  if check == "positive" then
    out.line("bad |= !(" .. v .. " > 0 && " .. v .. " <= " .. max .. ");")
  else
    out.line("bad |= !(" .. v .. " >= -" .. max .. " && " .. v .. " <= " .. max .. ");")
  end
end

-- env maps loop variables to integers (unrolled) or affine forms; one table per function,
-- set and cleared around each use
local function each_combo(vars, k, env, fn)
  if k > #vars then return fn() end
  local var = vars[k].var
  for v = 0, vars[k].n - 1 do
    env[var] = v
    each_combo(vars, k + 1, env, fn)
  end
  env[var] = nil
end

-- Loop-invariant code motion for an innermost C loop: loads whose index does not involve the
-- loop's variables, of buffers the loop does not write, become const locals declared before
-- it (h1, h2, ...), so compilers need not prove they are invariant (gcc often cannot, and
-- then does not vectorize) and tcc loads them once. Values are unchanged. Returns whether a
-- block was opened.
local function hoist(out, ctx, stmts, vars, env)
  local written, opened = {}, false
  for _, s in ipairs(stmts) do written[s.target.buf] = true end
  for _, s in ipairs(stmts) do
    for _, ld in ipairs(loops.loads(s.expr, {})) do
      local invariant = not written[ld.buf] and ld.buf.role ~= "local"
      for v in pairs(ld.index.t) do if vars[v] then invariant = false end end
      local str = index_str(ld.buf, ld.index, env)
      if invariant and not ctx.hoisted[str] then
        if not opened then out.open("{"); opened = true end
        ctx.nhoist = ctx.nhoist + 1
        ctx.hoisted[str] = "h" .. ctx.nhoist
        out.line("const " .. CTYPE[ctx.dtype] .. " " .. ctx.hoisted[str] .. " = " .. str .. ";")
      end
    end
  end
  return opened
end

-- A carried reduce's lane l: target[index + l] (l a number, or "l" for a lane loop's variable).
local carry_refs = setmetatable({}, { __mode = "k" }) -- statement -> lane -> ref, compiled once
local function lane_str(s, l, env, ctx)
  local refs = carry_refs[s] or {}
  carry_refs[s] = refs
  if not refs[l] then
    local off = l == "l" and aff.var("l") or aff.const(l)
    refs[l] = { buf = s.target.buf, index = aff.add(s.target.index, off) }
  end
  return target_str(refs[l], env, ctx)
end

-- The lanes of a carried reduce, loaded (before its terms) or stored back (after them), as
-- a lane loop, or written out for the JIT.
local function carry_lanes(out, s, acc, L, env, ctx, store)
  local function line(l, a) return store and (lane_str(s, l, env, ctx) .. " = " .. a) or (a .. " = " .. lane_str(s, l, env, ctx)) end
  if ctx.pointers then
    for l = 0, L - 1 do out.line(line(l, acc .. "[" .. l .. "]") .. ";") end
  else
    out.line("KG_LANES")
    out.line(util.format("for (int l = 0; l < %d; ++l) %s;", L, line("l", acc .. "[l]")))
  end
end

-- Under ctx.fma a term fuses into its lane's accumulator, unless the reduce is one long
-- chain: more than FMA_CHAIN steps per lane, and not a matrix product (which block.lua jams:
-- its chains run side by side). The fma's latency (4 cycles on Zen 4, the add's 3) would be
-- on the loop-carried chain. Decided from what lower made, so the bits are those of every
-- unroll policy, with or without fusion and blocking.
local function fuses_terms(ctx, s)
  local steps = s.rvars[#s.rvars].n // s.lanes
  for k = 1, #s.rvars - 1 do steps = steps * s.rvars[k].n end
  return ctx.fma and (s.product or steps <= emit.FMA_CHAIN)
end

-- Runs fn with ctx set for the C beside machine code (the header: ctx.fallback).
local function as_fallback(ctx, fn)
  local x, p, f = ctx.x86, ctx.pointers, ctx.fallback
  ctx.x86, ctx.pointers, ctx.fallback = false, false, true
  fn()
  ctx.x86, ctx.pointers, ctx.fallback = x, p, f
end

-- The most chunks of lanes whose loop is marked KG_SHORT (compiler_guard.c.in: gcc writes it
-- out). Longer loops gcc compiles well as loops (seq_ffn 8x64x256 f64: the product over 256
-- runs as fast either way; over 64, 8 chunks, KG_SHORT makes the forward 1.5x faster).
local SHORT_CHUNKS = 8

-- Opens the block of a group of reduces, its loop-invariant loads hoisted before the lane loop
-- (the targets are written after it: nothing inside writes); returns the hoisted names to
-- restore when the block closes.
local function open_reduces(out, group, env, ctx)
  local saved, rvars, probes = ctx.hoisted, {}, {}
  ctx.hoisted = setmetatable({}, { __index = saved })
  for _, r in ipairs(group[1].rvars) do rvars[r.var] = true end
  for i, s in ipairs(group) do probes[i] = { target = { buf = {} }, expr = s.expr } end
  if not hoist(out, ctx, probes, rvars, env) then out.open("{") end -- one block for both
  return saved
end

-- The vector form of reduces (#if KG_VEC, templates/vec.c.in): the lanes as KG_VN vector
-- variables of GNU C's vector extension, for a group of plain sums (no carried lanes; a
-- product fused into its accumulator under --fma on by KG_VFMA, under #if KG_VEC_FMA) of
-- lower.LANES lanes (64 bytes: vec.c.in's KG_VN vectors). Can e be a vector term: + - * /
-- and negation of loads along the summed axis v (one vector load of an argument or the
-- workspace) or not reading it (one value for every lane), nothing fused inside?
local function vectorizable(e, v, fma)
  if e.k == "num" then return true end
  if e.k == "load" then
    local k = e.index.t[v]
    return not k or (k == 1 and e.buf.role ~= "local")
  end
  if e.k ~= "op" then return false end
  local c = ops[e.op].c
  if not (c.prefix or c.infix) then return false end
  for _, a in ipairs(e.args) do
    if fma and not c.lhs and (c.infix == "+" or c.infix == "-") and a.k == "op" and ops[a.op].c.infix == "*"
      and not ops[a.op].c.lhs then
      return false -- the printer would fuse it
    end
    if not vectorizable(a, v, fma) then return false end
  end
  return true
end

-- The vector form of a group of reduces (emit_reduces below) under #if KG_VEC, or false where
-- it has none: each reduce's lanes as KG_VN vectors (a loop over q that compilers unroll), its
-- tree kg_vsum_<dtype>, which halves the lanes as combine_order does: lane i += lane i + w/2.
local function emit_vector_reduces(out, group, env, ctx, fuses, main)
  local first = group[1]
  local L, inner = first.lanes, first.rvars[#first.rvars]
  if ctx.pointers or ctx.scalar or ctx.fallback or ctx.x86 or main == 0 or L ~= lower.LANES[ctx.dtype] then
    return false
  end
  local v, terms, fused, dt = inner.var, {}, {}, ctx.dtype
  assert(L * emit.SIZEOF[dt] == 64, "emit_c: vec.c.in's vectors hold 64 bytes of lanes")
  for i, s in ipairs(group) do
    local e = s.expr -- a product that fuses into its accumulator: KG_VFMA (KG_VEC_FMA only)
    fused[i] = fuses[i] and e.k == "op" and ops[e.op].c.infix == "*" and not ops[e.op].c.lhs
    if s.lanes_out or (s.combine or "add") ~= "add" then return false end
    local parts = fused[i] and e.args or { e }
    for _, a in ipairs(parts) do if not vectorizable(a, v, ctx.fma) then return false end end
  end
  local any_fused = false
  for i = 1, #group do any_fused = any_fused or fused[i] end
  ctx.vec_used = true
  out.line(any_fused and "#if KG_VEC_FMA" or "#if KG_VEC")
  local saved = open_reduces(out, group, env, ctx)
  local function along(e) -- a vector (e reads along v), or one value splat to every lane
    for _, l in ipairs(loops.loads(e, {})) do if l.index.t[v] then return true end end
    return false
  end
  ctx.vcompiled[v] = ctx.vcompiled[v] or {} -- the printers of terms with vector loads along v
  local printers = ctx.vcompiled[v]
  for i, s in ipairs(group) do
    printers[s.expr] = printers[s.expr] or compile(s.expr, dt, v)
    local es, _, fac = printers[s.expr](env, ctx)
    if fused[i] then -- fac: the product's two factors, a value the same in every lane splat
      local f = { fac[1], fac[3] }
      for j, a in ipairs(s.expr.args) do
        if not along(a) then f[j] = "KG_VSPLAT_" .. dt .. "(" .. f[j] .. ")" end
      end
      terms[i] = f
    else
      terms[i] = es
    end
  end
  local acc, VL = {}, "KG_VLANES_" .. dt
  for i = 1, #group do
    acc[i] = #group == 1 and "acc" or ("acc" .. (i - 1))
    out.line("kg_v" .. dt .. " " .. acc[i] .. "[KG_VN];")
    out.line(util.format("for (int q = 0; q < KG_VN; ++q) %s[q] = (kg_v%s){0};", acc[i], dt))
  end
  local outer = {}
  for k = 1, #first.rvars - 1 do outer[k] = first.rvars[k] end
  for _, r in ipairs(outer) do out.open(util.format("for (int %s = 0; %s < %d; ++%s) {", r.var, r.var, r.n, r.var)) end
  out.open(util.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
  out.open("for (int q = 0; q < KG_VN; ++q) {")
  for i = 1, #group do
    local t = terms[i]
    if fused[i] then
      out.line(util.format("%s[q] = KG_VFMA_%s(%s, %s, %s[q]);", acc[i], dt, t[1], t[2], acc[i]))
    else
      out.line(acc[i] .. "[q] += " .. t .. ";")
    end
  end
  out.close()
  out.close()
  for j = main, inner.n - 1 do -- the rest: lane by lane, as in the array form
    env[v] = j
    local lane = util.format("[%d / %s][%d %% %s]", j - main, VL, j - main, VL)
    for i = 1, #group do
      local es, ep, efac = emit.expr(group[i].expr, env, ctx)
      local a = acc[i] .. lane
      out.line(fused[i] and (a .. " = " .. fold(nil, a, 3, es, ep, ctx, nil, efac) .. ";") or (a .. " += " .. es .. ";"))
    end
    env[v] = nil
  end
  for _ in ipairs(outer) do out.close() end
  for i, s in ipairs(group) do
    local target = target_str(s.target, env, ctx)
    out.line(target .. " = kg_vsum_" .. dt .. "(" .. acc[i] .. ");")
    emit_check(out, target, s.check, dt)
  end
  out.close()
  out.line("#else")
  ctx.hoisted = saved
  return true
end

-- Reduce statements, one or several: consecutive reduces over the same summed loops that do
-- not read each other run in one lane loop, each with its own accumulators (acc, or acc0,
-- acc1... for several), so every sum keeps its order (blocked matrix products, independent
-- sums of one row). Beside machine code (asm) the lanes are that loop too (ctx.fallback).
local function emit_reduces(out, group, env, ctx)
  local dtype, T = ctx.dtype, CTYPE[ctx.dtype]
  local first = group[1]
  local outer = {}
  for k = 1, #first.rvars - 1 do outer[k] = first.rvars[k] end
  local inner = first.rvars[#first.rvars]
  local L = first.lanes
  local fuses = {}
  for i, s in ipairs(group) do fuses[i] = fuses_terms(ctx, s) end
  if first.unroll and not ctx.fallback then
    for i, s in ipairs(group) do
      local ls, lp, f, combine = {}, {}, printer(s.expr, ctx), s.combine
      local fuse = fuses[i]
      if s.lanes_in then for l = 0, L - 1 do ls[l], lp[l] = lane_str(s, l, env, ctx), 3 end end
      each_combo(outer, 1, env, function()
        for j = 0, inner.n - 1 do
          env[inner.var] = j
          local ts, tp, tfac = f(env, ctx)
          local l = j % L
          if ls[l] then ls[l], lp[l] = fold(combine, ls[l], lp[l], ts, tp, ctx, nil, fuse and tfac) else ls[l], lp[l] = ts, tp end
        end
        env[inner.var] = nil
      end)
      if s.lanes_out then
        for l = 0, L - 1 do out.line(lane_str(s, l, env, ctx) .. " = " .. ls[l] .. ";") end
      else
        local target = target_str(s.target, env, ctx)
        out.line(target .. " = " .. tree(ls, lp, L, combine, ctx) .. ";")
        emit_check(out, target, s.check, dtype)
      end
    end
    return
  end
  local vec = emit_vector_reduces(out, group, env, ctx, fuses, inner.n - inner.n % L)
  local saved = open_reduces(out, group, env, ctx)
  local acc = {}
  for i, s in ipairs(group) do
    acc[i] = #group == 1 and "acc" or ("acc" .. (i - 1))
    if s.lanes_in then
      out.line(T .. " " .. acc[i] .. "[" .. L .. "];")
    elseif (s.combine or "add") == "add" then
      out.line(T .. " " .. acc[i] .. "[" .. L .. "] = {0};")
    else -- lane l starts from its first term (every outer index 0, the inner one l), which it
      -- then folds in again: maximum(x, x) = x
      out.line(T .. " " .. acc[i] .. "[" .. L .. "];")
      for _, r in ipairs(outer) do env[r.var] = 0 end
      for l = 0, L - 1 do
        env[inner.var] = l
        out.line(acc[i] .. "[" .. l .. "] = " .. emit.expr(s.expr, env, ctx) .. ";")
      end
      for _, r in ipairs(first.rvars) do env[r.var] = nil end
    end
  end
  for i, s in ipairs(group) do if s.lanes_in then carry_lanes(out, s, acc[i], L, env, ctx, false) end end
  for _, r in ipairs(outer) do out.open(util.format("for (int %s = 0; %s < %d; ++%s) {", r.var, r.var, r.n, r.var)) end
  local main = inner.n - inner.n % L
  local function fold_into(i, lane, es, ep, efac)
    if not fuses[i] then efac = nil end
    if (group[i].combine or "add") == "add" and not efac then return lane .. " += " .. es .. ";" end
    return lane .. " = " .. fold(group[i].combine, lane, 3, es, ep, ctx, nil, efac) .. ";"
  end
  local function lane_stmts(i, l, at)
    env[inner.var] = at
    out.line(fold_into(i, acc[i] .. "[" .. l .. "]", emit.expr(group[i].expr, env, ctx)))
    env[inner.var] = nil
  end
  local v = inner.var
  -- the JIT's lane loop as x86-64 machine code where the compiler may use it (x86.lua), the C
  -- loop below otherwise; with every term in it (whole), the lanes' tree too
  local whole = main == inner.n and #outer == 0
  local asm = ctx.x86 and main > 0 and x86.reduces(group, { dtype = dtype, fma = ctx.fma, fuses = fuses, v = v,
    main = main, L = L, env = env, acc = acc, tree = whole, text = function(e) return (emit.expr(e, env, ctx)) end })
  if asm then
    ctx.x86_used = true
    out.line("#if KG_X86_AVX2")
    for _, l in ipairs(asm) do out.line(l) end
    out.line("#else")
  end
  if main > 0 and (asm or ctx.fallback or ((#group > 1 or fuses[1]) and not ctx.pointers)) then
    -- several accumulators: the lanes as a loop of constant trip count, which gcc vectorizes
    -- with every accumulator in a register (written out, gcc spills them all); so are fmas
    -- (gcc 12 vectorizes fmaf in loops, but leaves written-out lanes of them scalar). Without
    -- KG_LANES gcc unrolls the lane loop of a sum whose terms are not products (two rows'
    -- LayerNorm sums side by side) and leaves it scalar: 3.5x slower.
    if main // L > 1 and main // L <= SHORT_CHUNKS then out.line("KG_SHORT") end
    out.open(util.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
    out.line("KG_LANES")
    out.open(util.format("for (int l = 0; l < %d; ++l) {", L))
    for i = 1, #group do
      env[v] = aff.add(aff.var(v), aff.var("l"))
      out.line(fold_into(i, acc[i] .. "[l]", emit.expr(group[i].expr, env, ctx)))
      env[v] = nil
    end
    out.close()
    out.close()
  elseif main == L then
    for l = 0, L - 1 do for i = 1, #group do lane_stmts(i, l, l) end end
  elseif main > 0 then
    -- the JIT (ctx.pointers) writes the lanes out for several accumulators too: tcc keeps
    -- nothing in registers, and base pointers save the address arithmetic of every term
    out.open(util.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
    local saved_bases, saved_hoisted = ctx.bases, ctx.hoisted
    if ctx.pointers then -- the lanes are L copies of the expressions per iteration
      ctx.scope[v] = true
      ctx.hoisted = setmetatable({}, { __index = ctx.hoisted })
      local lanes = {}
      for i, s in ipairs(group) do lanes[i] = { k = "store", target = { buf = { role = "local" } }, expr = s.expr } end
      ctx.bases = declare_bases(out, lanes, env, ctx, L, v)
    end
    for l = 0, L - 1 do
      for i = 1, #group do lane_stmts(i, l, aff.add(aff.var(v), aff.const(l))) end
    end
    ctx.scope[v], ctx.bases, ctx.hoisted = nil, saved_bases, saved_hoisted
    out.close()
  end
  if asm and not whole then out.line("#endif") end
  for i = 1, #group do for j = main, inner.n - 1 do lane_stmts(i, j - main, j) end end
  for _ in ipairs(outer) do out.close() end
  local tree_steps, levels = combine_order(L)
  local function combine(i, s)
    if s.lanes_out then
      carry_lanes(out, s, acc[i], L, env, ctx, true)
    elseif ctx.pointers or ctx.scalar then -- tcc, and cores without vector registers: written out
      for _, st in ipairs(tree_steps) do
        local a, b = acc[i] .. "[" .. st[1] .. "]", acc[i] .. "[" .. st[2] .. "]"
        out.line(a .. " = " .. fold(s.combine, a, 3, b, 3, ctx) .. ";")
      end
    else -- a loop per level, which gcc vectorizes (written out, it adds lane by lane)
      for _, lv in ipairs(levels) do
        local a, b = acc[i] .. "[l]", acc[i] .. "[l + " .. lv.offset .. "]"
        if lv.steps == 1 then a, b = acc[i] .. "[0]", acc[i] .. "[" .. lv.offset .. "]" end
        local line = a .. " = " .. fold(s.combine, a, 3, b, 3, ctx) .. ";"
        if lv.steps == 1 then
          out.line(line)
        else
          out.line("KG_LANES")
          out.line(util.format("for (int l = 0; l < %d; ++l) %s", lv.steps, line))
        end
      end
    end
  end
  local function store(i, s)
    if not s.lanes_out then
      local target = target_str(s.target, env, ctx)
      out.line(target .. " = " .. acc[i] .. "[0];")
      emit_check(out, target, s.check, dtype)
    end
  end
  if asm and whole then -- the machine code combined the lanes
    for i, s in ipairs(group) do combine(i, s) end
    out.line("#endif")
    for i, s in ipairs(group) do store(i, s) end
  else
    for i, s in ipairs(group) do combine(i, s); store(i, s) end
  end
  out.close()
  if vec then out.line("#endif") end
  ctx.hoisted = saved
end

-- May reduce b share the lane loop of the reduces in group (same loops, lanes and unrolling,
-- and not reading what they write)?
local function joins(group, b)
  local a = group[1]
  if b.k ~= "reduce" or not loops.same_sum(a, b) or (a.unroll or false) ~= (b.unroll or false)
    or (a.lanes_in or false) ~= (b.lanes_in or false) or (a.lanes_out or false) ~= (b.lanes_out or false) then
    return false
  end
  for _, l in ipairs(loops.loads(b.expr, {})) do
    for _, s in ipairs(group) do if l.buf == s.target.buf then return false end end
  end
  return true
end

local emit_body

local function emit_stmt(out, s, env, ctx)
  if s.k == "loop" then
    if (s.unroll and not ctx.fallback) or s.n == 1 then -- an extent-1 loop is just its body at index 0
      for v = 0, s.n - 1 do
        env[s.var] = v
        emit_body(out, s.body, env, ctx)
      end
      env[s.var] = nil
      return
    end
    local innermost = true
    for _, t in ipairs(s.body) do if t.k ~= "store" and t.k ~= "accum" then innermost = false end end
    local saved, hoisted = ctx.hoisted, false
    if innermost then
      ctx.hoisted = setmetatable({}, { __index = saved })
      hoisted = hoist(out, ctx, s.body, { [s.var] = true }, env)
    end
    local text = function(e) return (emit.expr(e, env, ctx)) end
    local asm = ctx.x86 and not s.strip and x86.loop(s, { dtype = ctx.dtype, fma = ctx.fma, env = env, text = text })
    local strip = not ctx.fallback and s.strip
    if ctx.x86 and not asm and s.body[1].k == "reduce" then -- a loop around one reduce
      local lines = x86.reduce_loop(s, { dtype = ctx.dtype, fma = ctx.fma, fuse = fuses_terms(ctx, s.body[1]),
        env = env, text = text })
      asm = lines and { lines = lines, main = s.n }
    end
    local function plain_loop()
      out.open(util.format("for (int %s = 0; %s < %d; ++%s) {", s.var, s.var, s.n, s.var))
      local saved_bases, saved_hoisted = ctx.bases, ctx.hoisted
      if ctx.pointers then
        ctx.scope[s.var] = true
        ctx.hoisted = setmetatable({}, { __index = ctx.hoisted })
        ctx.bases = declare_bases(out, s.body, env, ctx)
      end
      emit_body(out, s.body, env, ctx)
      ctx.scope[s.var], ctx.bases, ctx.hoisted = nil, saved_bases, saved_hoisted
      out.close()
    end
    if asm then -- machine code for the whole steps of vector registers (x86.lua), then the rest
      ctx.x86_used = true
      -- array math functions exist in kerngen's JIT only (KG_X86_VMATH)
      out.line(asm.math and "#if KG_X86_VMATH" or "#if KG_X86_AVX2")
      for _, name in ipairs(asm.math or {}) do ctx.vm_used[name] = ctx.dtype end
      for _, l in ipairs(asm.lines) do out.line(l) end
      for j = asm.main, s.n - 1 do
        env[s.var] = j
        emit_body(out, s.body, env, ctx)
      end
      env[s.var] = nil
      out.line("#else")
      as_fallback(ctx, plain_loop)
      out.line("#endif")
    elseif strip then -- strip-mined (schedule): blocks of s.strip copies of the body, then the rest
      local v, U = s.var, s.strip
      local main = s.n - s.n % U
      out.open(util.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, U))
      local saved_bases = ctx.bases
      ctx.scope[v] = true
      ctx.hoisted = setmetatable({}, { __index = ctx.hoisted })
      ctx.bases = declare_bases(out, s.body, env, ctx, U, v)
      for u = 0, U - 1 do
        env[v] = { c = u, t = { [v] = 1 } }
        emit_body(out, s.body, env, ctx)
      end
      ctx.scope[v] = nil
      ctx.bases = saved_bases
      ctx.hoisted = saved
      out.close()
      for j = main, s.n - 1 do
        env[v] = j
        emit_body(out, s.body, env, ctx)
      end
      env[v] = nil
    else
      plain_loop()
    end
    if hoisted then out.close() end
    ctx.hoisted = saved
  else
    local target = target_str(s.target, env, ctx)
    local es, ep, efac = printer(s.expr, ctx)(env, ctx)
    if s.k == "accum" then es = fold(s.combine, target, 3, es, ep, ctx, nil, efac) end
    out.line(target .. " = " .. es .. ";")
    emit_check(out, target, s.check, ctx.dtype)
  end
end

function emit_body(out, body, env, ctx)
  local i = 1
  while i <= #body do
    local s = body[i]
    if s.k == "reduce" then
      local group = { s }
      while body[i + #group] and joins(group, body[i + #group]) do group[#group + 1] = body[i + #group] end
      emit_reduces(out, group, env, ctx)
      i = i + #group
    else
      emit_stmt(out, s, env, ctx)
      i = i + 1
    end
  end
end

-- A top-level statement becomes a static function of its own (a step), taking a restrict
-- pointer to every buffer it touches: the workspace buffers it uses never overlap (fuse's
-- plan), and gcc relies on restrict for function parameters only (two restrict pointers
-- declared inside one function into the same workspace measured 12x slower, unvectorized).
-- The function calls its steps in order; gcc inlines them (restrict survives inlining).
local function emit_step(out, s, name, L, ctx)
  local used, written, names, seen, checks = {}, {}, {}, {}, false
  loops.walk({ s }, function(st)
    local n = st.node
    if n and not seen[n] then
      seen[n] = true
      names[#names + 1] = (n.name or ("%" .. n.id)) .. " " .. util.shape_str(n.shape)
    end
    checks = checks or st.check ~= nil
    if st.k == "loop" then return end
    used[st.target.buf], written[st.target.buf] = true, true
    for _, l in ipairs(loops.loads(st.expr, {})) do used[l.buf] = true end
  end)
  local T, formals, args, locals, views = CTYPE[ctx.dtype], {}, {}, {}, {}
  local function pass(buf, cname, arg)
    formals[#formals + 1] = (written[buf] and "" or "const ") .. T .. " *restrict " .. cname
    args[#args + 1] = arg
  end
  local nws = 0
  for _, b in ipairs(L.bufs) do if used[b] and b.role == "ws" then nws = nws + 1 end end
  for _, p in ipairs(L.params) do if used[p] then pass(p, p.cname, p.cname) end end
  -- a step of many workspace buffers takes the workspace whole (tcc's value stack holds 256
  -- entries: 150 chained products, 300 pointers, did not compile)
  local whole = #formals + nws > emit.ARGS_MAX
  if whole and nws > 0 then formals[#formals + 1] = T .. " *restrict ws"; args[#args + 1] = "ws" end
  for _, b in ipairs(L.bufs) do
    if used[b] and b.role == "ws" then
      if whole then
        views[#views + 1] = (written[b] and "" or "const ") .. T .. " *restrict ws_" .. b.id .. " = ws + " .. b.base .. ";"
      else
        pass(b, "ws_" .. b.id, "ws + " .. b.base)
      end
    end
    if used[b] and b.role == "local" then
      locals[#locals + 1] = b.cname .. (b.size == 1 and " = 0" or ("[" .. b.size .. "] = {0}"))
    end
  end
  out.line("/* " .. table.concat(names, ", ") .. " */")
  out.line("KG_NEST " .. (checks and "int " or "void ") .. name .. "(" .. table.concat(formals, ", ") .. ")")
  out.open("{")
  for _, v in ipairs(views) do out.line(v) end
  if checks then out.line("int bad = 0;") end
  if #locals > 0 then out.line(T .. " " .. table.concat(locals, ", ") .. ";") end
  emit_body(out, { s }, {}, ctx)
  if checks then out.line("return bad;") end
  out.close()
  out.line("")
  return (checks and "bad |= " or "") .. name .. "(" .. table.concat(args, ", ") .. ");", checks
end

---------------------------------------------------------------------------------------------
-- Functions

function emit.signature(fn, L, dtype)
  local T, args = CTYPE[dtype], {}
  for _, p in ipairs(L.params) do
    args[#args + 1] = (p.const and "const " or "") .. T .. " *restrict " .. p.cname
  end
  args[#args + 1] = T .. " *restrict ws"
  return "int " .. fn .. "(" .. table.concat(args, ", ") .. ")"
end


-- What the header and the JIT unit say about one function: its size macros ({ macro, owner:
-- what it stands for, line }; pipeline.generate defines each once across passes and refuses
-- one macro for two things), the documented prototype, and the packed-argument entry point
-- kg_entry_<pass>(void *const *a) through which the runtime calls it.
local ELEM_BYTES = { f32 = 4, f64 = 8 }

function emit.declarations(fn, L, dtype, upper, pass, comment)
  local T, sizes, doc, casts = CTYPE[dtype], {}, { "/* " .. fn .. ": " .. comment }, {}
  local function macro(name, owner, line) sizes[#sizes + 1] = { macro = name, owner = owner, line = line } end
  for i, p in ipairs(L.params) do
    local m = upper .. "_" .. p.cname:upper() .. "_SIZE"
    macro(m, "the size of " .. p.cname, util.format("#define %s %d /* %s %s, %d bytes */", m, p.count, p.cname,
      util.shape_str(p.shape), p.count * ELEM_BYTES[dtype]))
    for k, f in ipairs(p.fields or {}) do -- the optimizer's hyperparameters by name
      m = upper .. "_" .. p.cname:upper() .. "_" .. f:upper()
      macro(m, "the index of " .. p.cname .. "." .. f, util.format("#define %s %d /* %s[%d]: %s */", m, k - 1, p.cname, k - 1, f))
    end
    local what = p.fields and table.concat(p.fields, ", ") or p.name
    doc[#doc + 1] = util.format("   %-12s %s %s %s", p.cname, util.shape_str(p.shape), roles[p.arg_role].doc, what)
    casts[i] = "(" .. (p.const and "const " or "") .. T .. " *)a[" .. (i - 1) .. "]"
  end
  casts[#casts + 1] = "(" .. T .. " *)a[" .. #L.params .. "]"
  local ws_macro = upper .. "_" .. pass:upper() .. "_WS_SIZE"
  macro(ws_macro, "the workspace of " .. fn, util.format("#define %s %d /* workspace of %s, %d bytes */", ws_macro,
    L.ws_size, fn, L.ws_size * ELEM_BYTES[dtype]))
  doc[#doc + 1] = util.format("   %-12s [%d] workspace (%s elements) */", "ws", L.ws_size, ws_macro)
  return {
    sizes = sizes,
    prototype = table.concat(doc, "\n") .. "\n" .. emit.signature(fn, L, dtype) .. ";\n",
    entry = "int kg_entry_" .. pass .. "(void *const *a)\n{\n    return " .. fn .. "(" .. table.concat(casts, ", ") .. ");\n}\n",
  }
end

-- target: "simd" or "scalar" (pipeline's --target; block.lua's share of it is there)
function emit.fn(fn, L, dtype, helpers, comment, fma, target)
  local out = new_out()
  local ctx = { dtype = dtype, helpers = helpers, hoisted = {}, nhoist = 0, compiled = {}, vcompiled = {}, bases = {}, scope = {},
    pointers = L.policy == "auto", fma = fma, scalar = target == "scalar", x86 = x86.applies(L.policy, target),
    vm_used = {} }
  local nlocal = 0 -- one-element buffers: C locals of their step, named in buffer order
  for _, b in ipairs(L.bufs) do
    if b.role == "local" then
      b.cname = "t" .. nlocal
      nlocal = nlocal + 1
    end
  end
  -- a guarded step (block.lua's two forms of a nest) is defined and called under its #if
  local function under(guard, line)
    if guard then out.line("#if " .. guard) end
    local r1, r2 = line()
    if guard then out.line("#endif") end
    return r1, r2
  end
  local calls, checks = {}, false
  for k, s in ipairs(L.body) do
    local call, c = under(s.guard, function() return emit_step(out, s, fn .. "_" .. k, L, ctx) end)
    calls[k] = call
    out.guarded = out.guarded or s.guard ~= nil
    checks = checks or c
  end
  local read = {}
  loops.walk(L.body, function(st)
    if st.k == "loop" then return end
    if st.k == "accum" then read[st.target.buf] = true end
    for _, l in ipairs(loops.loads(st.expr, {})) do read[l.buf] = true end
  end)
  out.line("/* " .. comment .. " */")
  out.line(emit.signature(fn, L, dtype))
  out.line("{")
  out.depth = 1
  for _, p in ipairs(L.params) do if p.const and not read[p] then out.line("(void)" .. p.cname .. ";") end end
  if L.ws_size == 0 then out.line("(void)ws;") end
  if checks then out.line("int bad = 0;") end
  for k, c in ipairs(calls) do under(L.body[k].guard, function() out.line(c) end) end
  out.line(checks and "return bad;" or "return 0;")
  out.depth = 0
  out.line("}")
  out.x86, out.vm, out.vec = ctx.x86_used, ctx.vm_used, ctx.vec_used
  return out
end

---------------------------------------------------------------------------------------------
-- Baked inputs (pipeline's --const): one static const table per input, defined once per file
-- before the functions that read it by its C name. Values are util.c_literal literals (made by
-- util.c_literals, its fast form), so they round-trip; TABLE_LINE of them a line, and a comment
-- opens each row of a matrix so that a diff can be reviewed. Lines are joined once.
emit.TABLE_LINE = 8
emit.SIZEOF = { f32 = 4, f64 = 8 }
function emit.tables(tables, dtype)
  local T, out, fmt = CTYPE[dtype], {}, util.format
  for _, t in ipairs(tables) do
    local v, n, shape = t.values, t.count, t.shape
    local row = #shape >= 2 and shape[#shape] or n
    out[#out + 1] = fmt("/* %s %s: baked input, %d bytes */", t.name, util.shape_str(shape), n * emit.SIZEOF[dtype])
    out[#out + 1] = fmt("static const %s %s[%d] = {", T, t.cname, n)
    local strides = util.strides(shape)
    for r0 = 0, n - 1, row do
      if row < n then -- "/* w1[3] */": the index of the row
        local idx, rest = {}, r0
        for k = 1, #shape - 1 do idx[k] = rest // strides[k]; rest = rest % strides[k] end
        out[#out + 1] = "    /* " .. t.name .. "[" .. table.concat(idx, "][") .. "] */"
      end
      for l0 = r0, r0 + row - 1, emit.TABLE_LINE do
        local e = math.min(l0 + emit.TABLE_LINE, r0 + row)
        out[#out + 1] = "    " .. util.c_literals(v, l0 + 1, e, dtype) .. (e < n and "," or "")
      end
    end
    out[#out + 1] = "};"
    out[#out + 1] = ""
  end
  if #out == 0 then return "" end
  return table.concat(out, "\n") .. "\n"
end

---------------------------------------------------------------------------------------------
-- Helpers: small static functions whose bodies the op table gives (ops.lua, c.helper), after
-- the math functions (mathfn.emit: callees first), each once, sorted, so the file is
-- deterministic. A kernel file has one dtype.
function emit.helpers(helpers, fma)
  local names, math, dtype = {}, {}, nil
  for name, h in pairs(helpers) do
    if h.math then math[h.math] = true else names[#names + 1] = name end
    dtype = h.dtype
  end
  table.sort(names)
  local out = new_out()
  for _, name in ipairs(names) do
    local h = helpers[name]
    local T = CTYPE[h.dtype]
    local lit = function(x) return util.c_literal(x, h.dtype) end
    local params = ops[h.op].arity == 2 and (T .. " a, " .. T .. " b") or (T .. " v")
    out.line("static " .. T .. " " .. name .. "(" .. params .. ")")
    out.line("{")
    for _, l in ipairs(ops[h.op].c.helper(T, lit, h.dtype == "f32" and "f" or "")) do
      out.line("    " .. l)
    end
    out.line("}")
    out.line("")
  end
  local mtext = dtype and mathfn.emit(math, dtype, fma) or ""
  if #names == 0 and mtext ~= "" then return mtext end
  return mtext .. out.text()
end

-- Prototypes that replace <math.h> in the hermetic JIT (the host passes these symbols, each in
-- its double and float form): the generated code calls no other libm function (mathfn provides
-- exp, erf, erfc, tanh), and fma only under the fma option.
emit.LIBM = { "sqrt", "fma" }
local LIBM_ARITY = { sqrt = 1, fma = 3 }
function emit.libm_prototypes()
  local out = {}
  for _, f in ipairs(emit.LIBM) do
    for _, t in ipairs({ { "double", "" }, { "float", "f" } }) do
      local params = string.rep(t[1], LIBM_ARITY[f], ", ")
      out[#out + 1] = t[1] .. " " .. f .. t[2] .. "(" .. params .. ");"
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- The names templates/fma.c.in fills in (the preamble of a file generated with the fma option).
function emit.fma_names(dtype)
  return { fma = FMA[dtype], FMA = FMA[dtype]:upper(), T = CTYPE[dtype] }
end

return emit
