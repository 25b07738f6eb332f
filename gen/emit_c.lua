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

local ops = require("ops")
local util = require("util")
local loops = require("loops")
local roles = require("roles")
local mathfn = require("mathfn")

local aff = loops.aff

local emit = {}

local CTYPE = { f32 = "float", f64 = "double" }
emit.CTYPE = CTYPE
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

-- Workspace buffers are read and written through per-statement restrict pointers (ws_N, see
-- emit_top), so the C compiler knows they do not overlap; parameters by their own names;
-- one-element buffers are C locals.
local function index_str(buf, index, env)
  if buf.role == "local" then return buf.cname end
  local name = buf.role == "ws" and ("ws_" .. buf.id) or buf.cname
  return name .. "[" .. aff.render(index, 0, env) .. "]"
end

local function helper_name(e, dtype) return "kg_" .. e.op .. "_" .. dtype end

-- The pairwise steps that combine L lanes: width w -> ceil(w/2) by lane[i] += lane[i + ceil(w/2)].
local function combine_order(L)
  local steps, w = {}, L
  while w > 1 do
    local nw = (w + 1) // 2
    for i = 0, w - nw - 1 do steps[#steps + 1] = { i, i + nw } end
    w = nw
  end
  return steps
end

-- Two printed partial results folded by a reduction's combine: + for a sum, else the op's
-- helper (kg_maximum_f32...).
local function fold(combine, a, b, ctx)
  if (combine or "add") == "add" then return infix(a, "+", b, 1) end
  local name = "kg_" .. combine .. "_" .. ctx.dtype
  ctx.helpers[name] = { op = combine, dtype = ctx.dtype }
  return atom(name .. "(" .. a.s .. ", " .. b.s .. ")")
end

-- The printed terms folded by the fixed tree.
local function tree(terms, combine, ctx)
  local lanes = {}
  for i, t in ipairs(terms) do lanes[i - 1] = t end
  for _, st in ipairs(combine_order(#terms)) do lanes[st[1]] = fold(combine, lanes[st[1]], lanes[st[2]], ctx) end
  return lanes[0]
end

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
    local a = aff.eval(e.index, env)
    if next(a.t) == nil then
      if a.c == 0 then return emit.expr(e.e, env, ctx) end
      return atom(util.c_literal(0, dtype))
    end
    local v = emit.expr(e.e, env, ctx)
    return atom("(" .. aff.str(a) .. " == 0 ? " .. v.s .. " : " .. util.c_literal(0, dtype) .. ")")
  end
  if e.k == "tree" then
    local terms = {}
    for i, t in ipairs(e.terms) do terms[i] = emit.expr(t, env, ctx) end
    return tree(terms, e.combine, ctx)
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
    local strs = {}
    for i, a in ipairs(args) do strs[i] = a.s end
    return atom(name .. "(" .. table.concat(strs, ", ") .. ")")
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

-- Reduce statements, one or several: consecutive reduces over the same summed loops that do
-- not read each other run in one lane loop, each with its own accumulators (acc, or acc0,
-- acc1... for several), so every sum keeps its order (blocked matrix products, independent
-- sums of one row).
local function emit_reduces(out, group, env, ctx)
  local dtype, T = ctx.dtype, CTYPE[ctx.dtype]
  local first = group[1]
  local outer = {}
  for k = 1, #first.rvars - 1 do outer[k] = first.rvars[k] end
  local inner = first.rvars[#first.rvars]
  local L = first.lanes
  if first.unroll then
    for _, s in ipairs(group) do
      local target = index_str(s.target.buf, s.target.index, env)
      local lanes = {}
      each_combo(outer, 1, env, function()
        for j = 0, inner.n - 1 do
          env[inner.var] = j
          local t = emit.expr(s.expr, env, ctx)
          local l = j % L
          lanes[l] = lanes[l] and fold(s.combine, lanes[l], t, ctx) or t
        end
        env[inner.var] = nil
      end)
      local terms = {}
      for l = 0, L - 1 do terms[l + 1] = lanes[l] end
      out.line(target .. " = " .. tree(terms, s.combine, ctx).s .. ";")
      emit_check(out, target, s.check, dtype)
    end
    return
  end
  local rvars = {}
  for _, r in ipairs(first.rvars) do rvars[r.var] = true end
  local saved = ctx.hoisted
  ctx.hoisted = setmetatable({}, { __index = saved })
  local probes = {} -- the targets are written after the loop: nothing inside it writes
  for i, s in ipairs(group) do probes[i] = { target = { buf = {} }, expr = s.expr } end
  if not hoist(out, ctx, probes, rvars, env) then out.open("{") end -- one block for both
  local acc = {}
  for i, s in ipairs(group) do
    acc[i] = #group == 1 and "acc" or ("acc" .. (i - 1))
    if (s.combine or "add") == "add" then
      out.line(T .. " " .. acc[i] .. "[" .. L .. "] = {0};")
    else -- lane l starts from its first term (every outer index 0, the inner one l), which it
      -- then folds in again: maximum(x, x) = x
      out.line(T .. " " .. acc[i] .. "[" .. L .. "];")
      for _, r in ipairs(outer) do env[r.var] = 0 end
      for l = 0, L - 1 do
        env[inner.var] = l
        out.line(acc[i] .. "[" .. l .. "] = " .. emit.expr(s.expr, env, ctx).s .. ";")
      end
      for _, r in ipairs(first.rvars) do env[r.var] = nil end
    end
  end
  for _, r in ipairs(outer) do out.open(string.format("for (int %s = 0; %s < %d; ++%s) {", r.var, r.var, r.n, r.var)) end
  local main = inner.n - inner.n % L
  local function fold_into(i, lane, e)
    if (group[i].combine or "add") == "add" then return lane .. " += " .. e.s .. ";" end
    return lane .. " = " .. fold(group[i].combine, atom(lane), e, ctx).s .. ";"
  end
  local function lane_stmts(i, l, at)
    env[inner.var] = at
    out.line(fold_into(i, acc[i] .. "[" .. l .. "]", emit.expr(group[i].expr, env, ctx)))
    env[inner.var] = nil
  end
  local v = inner.var
  if #group > 1 and main > 0 then
    -- several accumulators: the lanes as a loop of constant trip count, which gcc vectorizes
    -- with every accumulator in a register (written out, gcc spills them all)
    out.open(string.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
    out.open(string.format("for (int l = 0; l < %d; ++l) {", L))
    for i = 1, #group do
      env[v] = aff.add(aff.var(v), aff.var("l"))
      out.line(fold_into(i, acc[i] .. "[l]", emit.expr(group[i].expr, env, ctx)))
      env[v] = nil
    end
    out.close()
    out.close()
  elseif main == L then
    for l = 0, L - 1 do lane_stmts(1, l, l) end
  elseif main > 0 then
    out.open(string.format("for (int %s = 0; %s < %d; %s += %d) {", v, v, main, v, L))
    for l = 0, L - 1 do lane_stmts(1, l, aff.add(aff.var(v), aff.const(l))) end
    out.close()
  end
  for i = 1, #group do for j = main, inner.n - 1 do lane_stmts(i, j - main, j) end end
  for _ in ipairs(outer) do out.close() end
  for i, s in ipairs(group) do
    for _, st in ipairs(combine_order(L)) do
      local a, b = acc[i] .. "[" .. st[1] .. "]", acc[i] .. "[" .. st[2] .. "]"
      out.line(a .. " = " .. fold(s.combine, atom(a), atom(b), ctx).s .. ";")
    end
    local target = index_str(s.target.buf, s.target.index, env)
    out.line(target .. " = " .. acc[i] .. "[0];")
    emit_check(out, target, s.check, dtype)
  end
  out.close()
  ctx.hoisted = saved
end

-- May reduce b share the lane loop of the reduces in group (same loops, lanes and unrolling,
-- and not reading what they write)?
local function joins(group, b)
  local a = group[1]
  if b.k ~= "reduce" or a.lanes ~= b.lanes or (a.unroll or false) ~= (b.unroll or false) or #a.rvars ~= #b.rvars then
    return false
  end
  for i, r in ipairs(a.rvars) do if r.var ~= b.rvars[i].var or r.n ~= b.rvars[i].n then return false end end
  for _, l in ipairs(loops.loads(b.expr, {})) do
    for _, s in ipairs(group) do if l.buf == s.target.buf then return false end end
  end
  return true
end

local emit_body

local function emit_stmt(out, s, env, ctx)
  if s.k == "loop" then
    if s.unroll or s.n == 1 then -- an extent-1 loop is just its body at index 0
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
    out.open(string.format("for (int %s = 0; %s < %d; ++%s) {", s.var, s.var, s.n, s.var))
    emit_body(out, s.body, env, ctx)
    out.close()
    if hoisted then out.close() end
    ctx.hoisted = saved
  else
    local target = index_str(s.target.buf, s.target.index, env)
    local e = emit.expr(s.expr, env, ctx)
    if s.k == "accum" then e = fold(s.combine, atom(target), e, ctx) end
    out.line(target .. " = " .. e.s .. ";")
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
  local used, written, names, seen = {}, {}, {}, {}
  for _, x in ipairs(loops.accesses({ s })) do
    used[x.buf] = true
    if x.write then written[x.buf] = true end
  end
  loops.walk({ s }, function(st)
    local n = st.node
    if n and not seen[n] then
      seen[n] = true
      names[#names + 1] = (n.name or ("%" .. n.id)) .. " " .. util.shape_str(n.shape)
    end
  end)
  local T, formals, args, locals, checks = CTYPE[ctx.dtype], {}, {}, {}, false
  local function pass(buf, cname, arg)
    formals[#formals + 1] = (written[buf] and "" or "const ") .. T .. " *restrict " .. cname
    args[#args + 1] = arg
  end
  for _, p in ipairs(L.params) do if used[p] then pass(p, p.cname, p.cname) end end
  for _, b in ipairs(L.bufs) do
    if used[b] and b.role == "ws" then pass(b, "ws_" .. b.id, "ws + " .. b.base) end
    if used[b] and b.role == "local" then locals[#locals + 1] = b.cname .. " = 0" end
  end
  loops.walk({ s }, function(st) checks = checks or st.check ~= nil end)
  out.line("/* " .. table.concat(names, ", ") .. " */")
  out.line("static " .. (checks and "int " or "void ") .. name .. "(" .. table.concat(formals, ", ") .. ")")
  out.open("{")
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


-- What the header and the JIT unit say about one function: size macros not yet in `seen`
-- (shared across passes), the documented prototype, and the packed-argument entry point
-- kg_entry_<pass>(void *const *a) through which the runtime calls it.
local ELEM_BYTES = { f32 = 4, f64 = 8 }

function emit.declarations(fn, L, dtype, upper, pass, comment, seen)
  local T, sizes, doc, casts = CTYPE[dtype], {}, { "/* " .. fn .. ": " .. comment }, {}
  for i, p in ipairs(L.params) do
    local macro = upper .. "_" .. p.cname:upper() .. "_SIZE"
    if not seen[macro] then
      seen[macro] = true
      sizes[#sizes + 1] = string.format("#define %s %d /* %s %s, %d bytes */", macro, p.count, p.cname,
        util.shape_str(p.shape), p.count * ELEM_BYTES[dtype])
    end
    for k, f in ipairs(p.fields or {}) do -- the optimizer's hyperparameters by name
      local m = upper .. "_" .. p.cname:upper() .. "_" .. f:upper()
      if not seen[m] then
        seen[m] = true
        sizes[#sizes + 1] = string.format("#define %s %d /* %s[%d]: %s */", m, k - 1, p.cname, k - 1, f)
      end
    end
    local what = p.fields and table.concat(p.fields, ", ") or p.name
    doc[#doc + 1] = string.format("   %-12s %s %s %s", p.cname, util.shape_str(p.shape), roles[p.arg_role].doc, what)
    casts[i] = "(" .. (p.const and "const " or "") .. T .. " *)a[" .. (i - 1) .. "]"
  end
  casts[#casts + 1] = "(" .. T .. " *)a[" .. #L.params .. "]"
  local ws_macro = upper .. "_" .. pass:upper() .. "_WS_SIZE"
  sizes[#sizes + 1] = string.format("#define %s %d /* workspace of %s, %d bytes */", ws_macro, L.ws_size, fn,
    L.ws_size * ELEM_BYTES[dtype])
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
  local nlocal = 0 -- one-element buffers: C locals of their step, named in buffer order
  for _, b in ipairs(L.bufs) do
    if b.role == "local" then
      b.cname = "t" .. nlocal
      nlocal = nlocal + 1
    end
  end
  local calls, checks = {}, false
  for k, s in ipairs(L.body) do
    local call, c = emit_step(out, s, fn .. "_" .. k, L, ctx)
    calls[k] = call
    checks = checks or c
  end
  local read = {}
  for _, x in ipairs(loops.accesses(L.body)) do if not x.write then read[x.buf] = true end end
  out.line("/* " .. comment .. " */")
  out.line(emit.signature(fn, L, dtype))
  out.line("{")
  out.depth = 1
  for _, p in ipairs(L.params) do if p.const and not read[p] then out.line("(void)" .. p.cname .. ";") end end
  if L.ws_size == 0 then out.line("(void)ws;") end
  if checks then out.line("int bad = 0;") end
  for _, c in ipairs(calls) do out.line(c) end
  out.line(checks and "return bad;" or "return 0;")
  out.depth = 0
  out.line("}")
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
  local T, out, fmt = CTYPE[dtype], {}, string.format
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
    local params = ops[h.op].arity == 2 and (T .. " a, " .. T .. " b") or (T .. " v")
    out.line("static " .. T .. " " .. name .. "(" .. params .. ")")
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
