-- emit_c: loop IR -> C99 text. Lines go into a table with an indent counter and are joined once.
--
-- Guarantees the generated-code contract: C99, no allocation, no globals, no I/O; restrict
-- pointers, const inputs; literals that round-trip (util.c_literal); names and order fixed by
-- the IR, so the same request gives the same bytes. Reductions use explicit lane accumulators
-- combined in a fixed tree, identical whether written as a loop or unrolled, so the summation
-- order belongs to the generator and not to the C compiler. Domain checks (ops.domain) set the
-- return code. Helper functions (sqrt_clamp, ...) and the math functions of mathfn (exp, erfc,
-- gelu...) are static and emitted only when used; the only libm function called is sqrt.

local ops = require("ops")
local util = require("util")
local lower = require("lower")
local mathfn = require("mathfn")

local emit = {}

emit.LANES = { f32 = 16, f64 = 8 }
local CTYPE = { f32 = "float", f64 = "double" }
local MAXVAL = { f32 = "3.40282347e+38f", f64 = "1.7976931348623157e+308" }

---------------------------------------------------------------------------------------------
-- Line buffer

local function new_out()
  local o = { lines = {}, depth = 0, statements = 0 }
  function o.line(s)
    o.lines[#o.lines + 1] = (s == "" and "" or string.rep("    ", o.depth) .. s)
    if s:sub(-1) == ";" then o.statements = o.statements + 1 end
  end
  function o.open(s) o.line(s); o.depth = o.depth + 1 end
  function o.close(s) o.depth = o.depth - 1; o.line(s or "}") end
  function o.text() return table.concat(o.lines, "\n") .. "\n" end
  return o
end

---------------------------------------------------------------------------------------------
-- Expressions. A printed expression is {s, prec}: 3 atom, 2.5 unary minus, 2 * /, 1 + -.

local function atom(s) return { s = s, prec = 3 } end
local function paren(p, min) if p.prec < min then return "(" .. p.s .. ")" end return p.s end
local function infix(a, op, b, prec)
  -- left operand keeps C's left-to-right grouping; the right one is parenthesized at equal
  -- precedence, because floating-point + and * are not associative
  return { s = paren(a, prec) .. " " .. op .. " " .. paren(b, prec + 0.1), prec = prec }
end

-- Workspace buffers are read and written through per-nest restrict pointers (ws_N, see
-- emit_nest), so the C compiler knows they do not overlap; parameters by their own names.
local function index_str(buf, index, env)
  local name, base = buf.cname, buf.base or 0
  if buf.cname == "ws" then name, base = "ws_" .. buf.id, 0 end
  return name .. "[" .. lower.aff.render(index, base, env) .. "]"
end

local function helper_name(e, dtype) return "kg_" .. e.op .. "_" .. dtype end

function emit.expr(e, env, ctx)
  local dtype = ctx.dtype
  if e.k == "load" then
    local s = index_str(e.buf, e.index, env)
    return atom(ctx.hoisted[s] or s)
  end
  if e.k == "num" then
    local s = util.c_literal(e.v, dtype)
    return { s = s, prec = (e.v < 0 or (e.v == 0 and 1 / e.v < 0)) and 2.5 or 3 }
  end
  if e.k == "ifzero" then
    local a = lower.aff.eval(e.index, env)
    if next(a.t) == nil then
      if a.c == 0 then return emit.expr(e.e, env, ctx) end
      return atom(util.c_literal(0, dtype))
    end
    local v = emit.expr(e.e, env, ctx)
    return atom("(" .. lower.aff.str(a) .. " == 0 ? " .. v.s .. " : " .. util.c_literal(0, dtype) .. ")")
  end
  local c = ops[e.op].c
  local args = {}
  for i, a in ipairs(e.args) do args[i] = emit.expr(a, env, ctx) end
  if c.infix then
    if c.lhs then return infix(atom(util.c_literal(c.lhs, dtype)), c.infix, args[1], c.prec) end
    return infix(args[1], c.infix, args[2], c.prec)
  elseif c.prefix then
    return { s = c.prefix .. paren(args[1], 2.5), prec = 2.5 }
  elseif c.math then
    local fn = type(c.math) == "function" and c.math(e.attr) or c.math
    ctx.helpers[mathfn.cname(fn, dtype)] = { math = fn, dtype = dtype }
    return atom(mathfn.cname(fn, dtype) .. "(" .. args[1].s .. ")")
  elseif c.helper then
    local name = helper_name(e, dtype)
    ctx.helpers[name] = { op = e.op, dtype = dtype }
    return atom(name .. "(" .. args[1].s .. ")")
  end
  error("emit_c: no C form for op " .. e.op)
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

-- Lane l sums the terms whose innermost reduction index j has j % L == l, in order (outer
-- reduction indices first, then increasing j); lanes are then combined pairwise:
-- width w -> ceil(w/2) by lane[i] += lane[i + ceil(w/2)].
local function combine_order(L)
  local steps, w = {}, L
  while w > 1 do
    local nw = (w + 1) // 2
    for i = 0, w - nw - 1 do steps[#steps + 1] = { i, i + nw } end
    w = nw
  end
  return steps
end

-- env maps loop variables to integers (unrolled) or affine forms; one table per nest,
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

-- Loop-invariant code motion for the innermost C loop: loads whose index does not involve
-- the loop's variables become const locals declared before it (h1, h2, ...), so compilers
-- need not prove they are invariant (gcc often cannot, and then does not vectorize) and tcc
-- loads them once. Values are unchanged. Returns whether a block was opened.
local function hoist(out, ctx, e, vars, env)
  local opened = false
  for _, ld in ipairs(lower.loads(e, {})) do
    local invariant = true
    for v in pairs(ld.index.t) do if vars[v] then invariant = false end end
    local s = index_str(ld.buf, ld.index, env)
    if invariant and not ctx.hoisted[s] then
      if not opened then out.open("{"); opened = true end
      ctx.nhoist = ctx.nhoist + 1
      ctx.hoisted[s] = "h" .. ctx.nhoist
      out.line("const " .. CTYPE[ctx.dtype] .. " " .. ctx.hoisted[s] .. " = " .. s .. ";")
    end
  end
  return opened
end

local function emit_reduce(out, nest, env, ctx)
  local b, dtype, T = nest.body, ctx.dtype, CTYPE[ctx.dtype]
  local outer = {}
  for k = 1, #b.rvars - 1 do outer[k] = b.rvars[k] end
  local inner = b.rvars[#b.rvars]
  local L = math.min(emit.LANES[dtype], inner.n)
  local target = index_str(b.target.buf, b.target.index, env)
  if nest.unroll_reduce then
    local lanes = {}
    each_combo(outer, 1, env, function()
      for j = 0, inner.n - 1 do
        env[inner.var] = j
        local t = emit.expr(b.expr, env, ctx)
        local l = j % L
        lanes[l] = lanes[l] and infix(lanes[l], "+", t, 1) or t
      end
      env[inner.var] = nil
    end)
    for _, s in ipairs(combine_order(L)) do lanes[s[1]] = infix(lanes[s[1]], "+", lanes[s[2]], 1) end
    out.line(target .. " = " .. lanes[0].s .. ";")
    emit_check(out, target, b.check, dtype)
    return
  end
  local rvars = {}
  for _, r in ipairs(b.rvars) do rvars[r.var] = true end
  local saved = ctx.hoisted
  ctx.hoisted = setmetatable({}, { __index = saved })
  if not hoist(out, ctx, b.expr, rvars, env) then out.open("{") end -- one block for both
  out.line(T .. " acc[" .. L .. "] = {0};")
  for _, r in ipairs(outer) do out.open(string.format("for (int %s = 0; %s < %d; ++%s) {", r.var, r.var, r.n, r.var)) end
  local main = inner.n - inner.n % L
  local function lane_stmt(l, at)
    env[inner.var] = at
    out.line("acc[" .. l .. "] += " .. emit.expr(b.expr, env, ctx).s .. ";")
    env[inner.var] = nil
  end
  if main == L then
    for l = 0, L - 1 do lane_stmt(l, l) end
  else
    local v = inner.var
    out.open(string.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
    for l = 0, L - 1 do lane_stmt(l, lower.aff.add(lower.aff.var(v), lower.aff.const(l))) end
    out.close()
  end
  for j = main, inner.n - 1 do lane_stmt(j - main, j) end
  for _ in ipairs(outer) do out.close() end
  for _, s in ipairs(combine_order(L)) do
    out.line(string.format("acc[%d] = acc[%d] + acc[%d];", s[1], s[1], s[2]))
  end
  out.line(target .. " = acc[0];")
  emit_check(out, target, b.check, dtype)
  out.close()
  ctx.hoisted = saved
end

local function emit_nest(out, nest, ctx)
  -- one restrict pointer per workspace buffer this nest touches: buffers in use at the same
  -- time never overlap (lower's workspace plan), which is what restrict promises
  local target, used = nest.body.target.buf, {}
  for b in pairs(lower.reads(nest.body.expr, {})) do if b.cname == "ws" then used[#used + 1] = b end end
  if target.cname == "ws" then used[#used + 1] = target end
  table.sort(used, function(a, b) return a.id < b.id end)
  if #used > 0 then
    out.open("{")
    for _, b in ipairs(used) do
      out.line(string.format("%s%s *restrict ws_%d = ws + %d;", b == target and "" or "const ", CTYPE[ctx.dtype], b.id, b.base))
    end
  end
  local function level(k, env)
    local l = nest.loops[k]
    if k <= nest.keep and l.n > 1 then -- an extent-1 loop is just its body at index 0
      local saved, hoisted = ctx.hoisted, false
      if k == #nest.loops and nest.body.k == "store" then -- the innermost loop: hoist invariants
        ctx.hoisted = setmetatable({}, { __index = saved })
        hoisted = hoist(out, ctx, nest.body.expr, { [l.var] = true }, env)
      end
      out.open(string.format("for (int %s = 0; %s < %d; ++%s) {", l.var, l.var, l.n, l.var))
      level(k + 1, env)
      out.close()
      if hoisted then out.close() end
      ctx.hoisted = saved
    elseif l then
      for v = 0, l.n - 1 do
        env[l.var] = v
        level(k + 1, env)
      end
      env[l.var] = nil
    elseif nest.body.k == "reduce" then
      emit_reduce(out, nest, env, ctx)
    else
      local b = nest.body
      local target = index_str(b.target.buf, b.target.index, env)
      out.line(target .. " = " .. emit.expr(b.expr, env, ctx).s .. ";")
      emit_check(out, target, b.check, ctx.dtype)
    end
  end
  level(1, {})
  if #used > 0 then out.close() end
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

local ROLE_DOC = {
  input = "input", cotangent = "cotangent of output", tangent = "tangent of input",
  output = "output", grad = "gradient of input", output_tangent = "tangent of output",
}

-- What the header and the JIT unit say about one function: size macros not yet in `seen`
-- (shared across passes), the documented prototype, and the packed-argument entry point
-- kg_entry_<pass>(void *const *a) through which the runtime calls it.
function emit.declarations(fn, L, dtype, upper, pass, comment, seen)
  local T, sizes, doc, casts = CTYPE[dtype], {}, { "/* " .. fn .. ": " .. comment }, {}
  for i, p in ipairs(L.params) do
    local macro = upper .. "_" .. p.cname:upper() .. "_SIZE"
    if not seen[macro] then
      seen[macro] = true
      sizes[#sizes + 1] = string.format("#define %s %d /* %s %s */", macro, p.count, p.cname, util.shape_str(p.shape))
    end
    doc[#doc + 1] = string.format("   %-12s %s %s %s", p.cname, util.shape_str(p.shape), ROLE_DOC[p.role], p.name)
    casts[i] = "(" .. (p.const and "const " or "") .. T .. " *)a[" .. (i - 1) .. "]"
  end
  casts[#casts + 1] = "(" .. T .. " *)a[" .. #L.params .. "]"
  local ws_macro = upper .. "_" .. pass:upper() .. "_WS_SIZE"
  sizes[#sizes + 1] = string.format("#define %s %d /* workspace of %s */", ws_macro, L.ws_size, fn)
  doc[#doc + 1] = string.format("   %-12s [%d] workspace (%s elements) */", "ws", L.ws_size, ws_macro)
  return {
    sizes = sizes,
    prototype = table.concat(doc, "\n") .. "\n" .. emit.signature(fn, L, dtype) .. ";\n",
    entry = "int kg_entry_" .. pass .. "(void *const *a)\n{\n    return " .. fn .. "(" .. table.concat(casts, ", ") .. ");\n}\n",
  }
end

function emit.fn(fn, L, dtype, helpers, comment)
  local out = new_out()
  local ctx = { dtype = dtype, helpers = helpers, hoisted = {}, nhoist = 0 }
  local used, checks = {}, false
  for _, nest in ipairs(L.nests) do
    for buf in pairs(lower.reads(nest.body.expr, {})) do used[buf] = true end
    checks = checks or nest.body.check ~= nil
  end
  out.line("/* " .. comment .. " */")
  out.line(emit.signature(fn, L, dtype))
  out.line("{")
  out.depth = 1
  for _, p in ipairs(L.params) do if p.const and not used[p] then out.line("(void)" .. p.cname .. ";") end end
  if L.ws_size == 0 then out.line("(void)ws;") end
  if checks then out.line("int bad = 0;") end
  for _, nest in ipairs(L.nests) do
    local n = nest.node
    out.line("/* " .. (n.name or ("%" .. n.id)) .. " " .. util.shape_str(n.shape) .. " */")
    emit_nest(out, nest, ctx)
  end
  out.line(checks and "return bad;" or "return 0;")
  out.depth = 0
  out.line("}")
  return out
end

---------------------------------------------------------------------------------------------
-- Helpers: small static functions whose bodies the op table gives (ops.lua, c.helper), after
-- the math functions (mathfn.emit: callees first), each once, sorted, so the file is
-- deterministic. A kernel file has one dtype.
function emit.helpers(helpers)
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
    out.line("static " .. T .. " " .. name .. "(" .. T .. " v)")
    out.line("{")
    for _, l in ipairs(ops[h.op].c.helper(T, lit, h.dtype == "f32" and "f" or "")) do
      out.line("    " .. l)
    end
    out.line("}")
    out.line("")
  end
  local mtext = dtype and mathfn.emit(math, dtype) or ""
  if #names == 0 and mtext ~= "" then return mtext end
  return mtext .. out.text()
end

-- Prototypes that replace <math.h> in the hermetic JIT (the host passes these symbols): the
-- generated code calls no other libm function (mathfn provides exp, erf, erfc, tanh).
emit.LIBM = { "sqrt" }
function emit.libm_prototypes()
  local out = {}
  for _, f in ipairs(emit.LIBM) do
    out[#out + 1] = "double " .. f .. "(double);"
    out[#out + 1] = "float " .. f .. "f(float);"
  end
  return table.concat(out, "\n") .. "\n"
end

return emit
