-- x86: machine code for the JIT's loops on x86-64 with AVX2 and FMA (README, "The JIT's
-- machine code").
--
-- tcc does not vectorize and keeps every value in memory. Its assembler knows no AVX, but takes
-- `.byte`: in the JIT's schedule (unroll auto) a loop whose terms this module supports becomes
-- one asm statement whose bytes are written here, beside the C loop it replaces (#if
-- KG_X86_AVX2, templates/x86.c.in: kerngen's JIT sets it from the processor, so the text is the
-- same on every machine). What becomes machine code:
--   x86.reduces  the whole lane steps of a group of reduces: each accumulator's L lanes in
--                ymm registers, 8 (f32) or 4 (f64) a register, and the lanes' tree when every
--                term is in the loop;
--   x86.loop     a loop of stores and sums into elements contiguous along it or into locals
--                (registers), 8 or 4 iterations at once, with loops inside written out or as
--                loops of the machine code, and math functions called through the library's
--                array forms (gen/mathlib.lua; KG_X86_VMATH).
-- Terms: + - * /, negation and emit_c's fused multiply-adds, of loads contiguous along the loop
-- (stride 1) and of values that do not change in it (broadcast). Every lane performs the
-- operations of the C text in its order (a vector add, multiply, divide or fma rounds each
-- lane as the scalar one does), so the bits are those of every other schedule and compiler.
--
-- The statement gets one pointer, in rax: a table built in C just before it, {constants,
-- accumulators..., streams..., locals...}. Registers: rcx the byte offset along the loop; rdx
-- rsi rdi r8-r10, then rbx r12-r14, the streams (one per buffer and symbolic index: x + 768 *
-- i0, read at constant offsets from it; further ones are read from the table at each access);
-- r11 the constants (invariant loads, scalars and literals, broadcast where used); r15 the
-- count of a loop inside; ymm0.. the accumulators, the others temporaries and locals. Every
-- register it changes is declared clobbered (KG_X86_CLOBBERS: tcc's assembler names no
-- vector register, and tcc keeps no value in one across statements); vzeroupper ends it.

local loops = require("loops")
local mathlib = require("mathlib")
local ops = require("ops")
local util = require("util")

local aff = loops.aff

local x86 = {}

-- Does a function of this unroll policy and target get machine code (beside its C loops)?
-- The JIT's schedule (auto), unless the loops are shaped for a scalar core.
function x86.applies(policy, target) return policy == "auto" and target ~= "scalar" end

local ES = { f32 = 4, f64 = 8 }
local GP = { rax = 0, rcx = 1, rdx = 2, rbx = 3, rsi = 6, rdi = 7, r8 = 8, r9 = 9, r10 = 10, r11 = 11, r12 = 12,
  r13 = 13, r14 = 14, r15 = 15 }
-- the streams' registers: those KG_X86_CLOBBERS names, then callee-saved ones, named in the
-- statement's clobbers when used (the compiler saves them around it)
local STREAMS = { "rdx", "rsi", "rdi", "r8", "r9", "r10", "rbx", "r12", "r13", "r14" }
local SCRATCH_STREAMS = 6
local REG = {} -- number -> name
for name, n in pairs(GP) do REG[n] = name end
local NYMM = 16
local BYTE_LINE = 6 -- instructions per .byte line of the text
-- displacements, counts and steps are signed 32-bit immediates: larger tensors keep their C
local DISP_MAX = 2 ^ 31 - 4096
local MAX_ACC = 12 -- accumulator registers per statement: at least 4 left for the terms

---------------------------------------------------------------------------------------------
-- Encoding: VEX (3-byte form, 256-bit), ModRM with an 8- or 32-bit displacement for memory
-- operands.

local HEX = {} -- byte -> "0x.." (a lookup per byte, not a format)
for b = 0, 255 do
  local d = "0123456789abcdef"
  HEX[b] = "0x" .. d:sub(b // 16 + 1, b // 16 + 1) .. d:sub(b % 16 + 1, b % 16 + 1)
end

-- An instruction's bytes (a list of numbers; assemble writes them as .byte lines, from its
-- field `text`, the bytes in hex joined by commas). op: {map = 1 (0F) | 2 (0F38) | 3 (0F3A),
-- pp = 0 | 1 (66) | 2 (F3) | 3 (F2), w = 0 | 1, code, xmm = true: 128-bit, imm = byte}; reg,
-- vvvv: register numbers (vvvv nil: unused); rm: a register number, or {base = gp, index = gp
-- or nil, disp = int}. Memoized (generation time: a loop body and its written-out copies repeat
-- them); the lists are not changed after.
local function text_of(t)
  local hex = {}
  for i, b in ipairs(t) do hex[i] = HEX[b] end
  return table.concat(hex, ",")
end
local MEMO_MAX = 1 << 16 -- instructions remembered by a state; then it starts over
local memo, memo_count = {}, 0
local function vex(op, reg, vvvv, rm)
  local mem = type(rm) == "table"
  local key
  if mem then -- disp within +-2^31 (DISP_MAX): 33 bits
    key = ((((reg * 17 + (vvvv or 16)) * 16 + rm.base) * 17 + (rm.index or 16)) << 33) + rm.disp + (1 << 32)
  else
    key = -(reg * 256 + (vvvv or 16) * 16 + rm) - 1
  end
  local m = memo[op]
  if m and m[key] then return m[key] end
  local X = (mem and rm.index and rm.index >= 8) and 0 or 1
  local B = mem and (rm.base >= 8 and 0 or 1) or (rm >= 8 and 0 or 1)
  local R = reg >= 8 and 0 or 1
  local t = { 0xc4, (R << 7) | (X << 6) | (B << 5) | op.map,
    (op.w << 7) | ((~(vvvv or 0) & 15) << 3) | ((op.xmm and 0 or 1) << 2) | op.pp, op.code }
  if not mem then
    t[5] = 0xc0 | ((reg & 7) << 3) | (rm & 7)
  else
    local short = rm.disp >= -128 and rm.disp <= 127 -- mod 01: an 8-bit displacement
    local mod = short and 0x40 or 0x80
    if rm.index then
      t[5] = mod | ((reg & 7) << 3) | 4
      t[6] = ((rm.index & 7) << 3) | (rm.base & 7)
    elseif rm.base & 7 == 4 then -- r12 (or rsp) as a base takes a SIB byte: no index
      t[5] = mod | ((reg & 7) << 3) | 4
      t[6] = 0x24
    else
      t[5] = mod | ((reg & 7) << 3) | (rm.base & 7)
    end
    local d = rm.disp & 0xffffffff
    for k = 0, short and 0 or 3 do t[#t + 1] = (d >> (8 * k)) & 0xff end
  end
  if op.imm then t[#t + 1] = op.imm end
  t.text = text_of(t)
  if memo_count >= MEMO_MAX then memo, memo_count = {}, 0 end
  memo[op] = memo[op] or {}
  memo[op][key] = t
  memo_count = memo_count + 1
  return t
end

-- the instructions used, per dtype (ps: f32, pd: f64); one table each (vex memoizes per op)
local ISA = {}
local function isa(dtype)
  if ISA[dtype] then return ISA[dtype] end
  local pd = dtype == "f64" and 1 or 0
  local function sse(code) return { map = 1, pp = pd, w = 0, code = code } end
  local function fma(code) return { map = 2, pp = 1, w = pd, code = code } end
  ISA[dtype] = {
    load = sse(0x10), store = sse(0x11), mov = sse(0x28), add = sse(0x58), mul = sse(0x59), sub = sse(0x5c), div = sse(0x5e),
    xor = sse(0x57), broadcast = { map = 2, pp = 1, w = 0, code = dtype == "f64" and 0x19 or 0x18 },
    fmadd = fma(0xb8), fmsub = fma(0xba), fnmadd = fma(0xbc), -- 231: dst = +-(a b) +- dst
    -- the lanes' tree: the upper 128 bits, the upper 64, lane 1 to lane 0; an xmm add; lane 0 stored
    high128 = { map = 3, pp = 1, w = 0, code = 0x19, imm = 1 }, -- vextractf128 rm, reg, 1
    high64 = { map = 1, pp = 0, w = 0, code = 0x12, xmm = true }, -- vmovhlps: dst[0..1] = b[2..3]
    lane1 = pd == 1 and { map = 1, pp = 1, w = 0, code = 0x15, xmm = true } -- vunpckhpd: dst[0] = b[1]
      or { map = 1, pp = 2, w = 0, code = 0x16, xmm = true }, -- vmovshdup: dst[0] = src[1]
    add128 = { map = 1, pp = pd, w = 0, code = 0x58, xmm = true },
    store1 = { map = 1, pp = pd == 1 and 3 or 2, w = 0, code = 0x11, xmm = true }, -- vmovss / vmovsd
    lane3 = { map = 3, pp = 1, w = 0, code = 0x04, xmm = true, imm = 0xff }, -- vpermilps: dst[0] = src[3]
  }
  return ISA[dtype]
end

---------------------------------------------------------------------------------------------
-- Planning: the streams and constants of a group's terms, or nil when a term is unsupported.

-- e's forms: "load" along the axis, "slot" (an invariant: C computes it), "op"
-- An op whose C form the machine code has: + - * /, negation, and lhs / a (ops.lua's c).
local function arithmetic(c)
  return c ~= nil and (c.prefix == "-" or c.infix == "+" or c.infix == "-" or c.infix == "*" or c.infix == "/")
    and (not c.lhs or c.infix == "/")
end

local function scan(e, P)
  if P.kind[e] then return true end
  if e.k == "num" then
    P.kind[e] = { slot = P.slot(util.c_literal(e.v, P.dtype)) }
    return true
  elseif e.k == "load" then
    if e.buf.role == "local" then
      if e.buf.size ~= 1 then return false end
      -- a register once the iteration has set it (x86.loop), else its C value
      P.kind[e] = P.locals and P.locals[e.buf] and { reg = e.buf } or { slot = P.slot(P.text(e)) }
      return true
    end
    -- what does not change when loops inside are written out (their variables are numbers
    -- in env: only the constant moves) is worked out once per load and plan
    local inner = P.inner and P.inner.var or false
    local info = P.load_info[e]
    if not info or info.inner ~= inner then
      local _, sym = aff.resolve(e.index, P.env)
      local k = sym and sym[P.v] or 0
      local u = P.inner and sym and sym[P.inner.var] or 0 -- an asm loop inside (elementwise)
      info = { k = k, u = u, inner = inner }
      P.load_info[e] = info
      if (k == 0 and u == 0) or (k ~= 1 and k ~= 0) then
        info.slot = k == 0
      else
        local rest = {}
        for var, kv in pairs(sym) do if var ~= P.v and (not P.inner or var ~= P.inner.var) then rest[var] = kv end end
        local name = e.buf.role == "ws" and ("ws_" .. e.buf.id) or e.buf.cname
        info.ptr = next(rest) and (name .. " + " .. aff.str({ c = 0, t = rest })) or name
        info.key = u == 0 and info.ptr or (info.ptr .. " @" .. u) -- a stream the asm loop advances
      end
    end
    local k, u = info.k, info.u
    if info.slot then
      P.kind[e] = { slot = P.slot(P.text(e)) }
      return true
    elseif not info.ptr then
      return false
    end
    local c = e.index.c
    for var, kv in pairs(e.index.t) do
      local x = P.env[var]
      if type(x) == "number" then c = c + kv * x elseif x then c = c + kv * x.c end
    end
    local s = P.streams[info.key]
    if not s then
      -- past the registers, a stream's pointer is read from the table at each access (elementwise)
      if #P.order >= #STREAMS and not (P.overflow and u == 0) then return false end
      if u ~= 0 and math.abs(u * ES[P.dtype] * P.inner.n) > DISP_MAX then return false end
      s = { ptr = info.ptr, reg = GP[STREAMS[#P.order + 1]], step = u ~= 0 and u * ES[P.dtype] or nil, at = 8 * (#P.order + 1) }
      P.streams[info.key] = s
      P.order[#P.order + 1] = s
      if s.step then P.inner.streams[#P.inner.streams + 1] = s end
    end
    -- along v a vector, else (an element the asm loop moves along) one value broadcast
    if math.abs(c * ES[P.dtype]) > DISP_MAX then return false end
    P.kind[e] = { stream = s, disp = c * ES[P.dtype], broadcast = k == 0 or nil }
    return true
  elseif e.k == "op" then
    local c = ops[e.op].c
    if not arithmetic(c) then return false end
    if c.lhs then P.kind[e] = { lhs = P.slot(util.c_literal(c.lhs, P.dtype)) } end
    if c.prefix then P.kind[e] = { sign = P.slot(util.c_literal(-0.0, P.dtype)) } end
    for _, a in ipairs(e.args) do if not scan(a, P) then return false end end
    P.kind[e] = P.kind[e] or {}
    return true
  end
  return false
end

---------------------------------------------------------------------------------------------
-- Code: a value is {r = ymm} or, under fma, an unrounded product {a = ymm, b = ymm}.

-- The register holding a stream's pointer: its own, or r11 loaded from the table (an overflow
-- stream, elementwise's), after which stream_done puts the constants' pointer back in r11.
local function stream_base(P, s)
  if s.reg then return s.reg end
  P.code[#P.code + 1] = "movq " .. s.at .. "(%%rax), %%r11"
  return GP.r11
end
local function stream_done(P, s)
  if not s.reg then P.code[#P.code + 1] = "movq 0(%%rax), %%r11" end
end

-- x in a register: an unrounded product multiplied out (rounded, as C's a * b)
local function value_of(P, x)
  if x.r then return x.r end
  P.code[#P.code + 1] = vex(P.isa.mul, x.a, x.a, x.b)
  P.free[#P.free + 1] = x.b
  return x.a
end

-- acc += x, emit_c's fold: a product fuses into acc (one rounding) when `fuse`; x's registers
-- are free afterwards
local function fold_into(P, acc, x, fuse)
  if x.a and fuse then
    P.code[#P.code + 1] = vex(P.isa.fmadd, acc, x.a, x.b)
    P.free[#P.free + 1] = x.a
    P.free[#P.free + 1] = x.b
  else
    local r = value_of(P, x)
    P.code[#P.code + 1] = vex(P.isa.add, acc, acc, r)
    P.free[#P.free + 1] = r
  end
end

-- (helpers of gen, not closures in it: gen runs for every node of every term written out)
local function alloc(P)
  local r = table.remove(P.free)
  if not r then error(P) end -- out of registers: the caller keeps the C text
  return r
end
local function free(P, r) P.free[#P.free + 1] = r end
local function broadcast(P, slot)
  local r = alloc(P)
  P.code[#P.code + 1] = vex(P.isa.broadcast, r, nil, { base = GP.r11, disp = slot * ES[P.dtype] })
  return r
end

local function gen(e, chunk, P)
  local I, code, kind = P.isa, P.code, P.kind[e]
  if kind.slot then return { r = broadcast(P, kind.slot) } end
  if kind.reg then -- a copy: the operations write into their first operand
    local r = alloc(P)
    code[#code + 1] = vex(I.mov, r, nil, P.locals[kind.reg])
    return { r = r }
  end
  if kind.stream then
    local r = alloc(P)
    local base = stream_base(P, kind.stream)
    if kind.broadcast then
      code[#code + 1] = vex(I.broadcast, r, nil, { base = base, disp = kind.disp })
    else
      code[#code + 1] = vex(I.load, r, nil, { base = base, index = GP.rcx, disp = kind.disp + 32 * chunk })
    end
    stream_done(P, kind.stream)
    return { r = r }
  end
  local c = ops[e.op].c
  if c.prefix then
    local a = value_of(P, gen(e.args[1], chunk, P))
    local m = broadcast(P, kind.sign)
    code[#code + 1] = vex(I.xor, a, a, m)
    free(P, m)
    return { r = a }
  end
  if c.lhs then -- lhs op a
    local l = broadcast(P, kind.lhs)
    local a = value_of(P, gen(e.args[1], chunk, P))
    code[#code + 1] = vex(I.div, l, l, a)
    free(P, a)
    return { r = l }
  end
  local A = gen(e.args[1], chunk, P)
  local B = gen(e.args[2], chunk, P)
  if c.infix == "*" then
    local a, b = value_of(P, A), value_of(P, B)
    if P.fma then return { a = a, b = b } end
    code[#code + 1] = vex(I.mul, a, a, b)
    free(P, b)
    return { r = a }
  elseif c.infix == "/" then
    local a, b = value_of(P, A), value_of(P, B)
    code[#code + 1] = vex(I.div, a, a, b)
    free(P, b)
    return { r = a }
  end
  -- + and -: emit_c's fusion, operand for operand: the left product first
  if A.a then
    local b = value_of(P, B)
    code[#code + 1] = vex(c.infix == "+" and I.fmadd or I.fmsub, b, A.a, A.b) -- fma(a1, a2, +-b)
    free(P, A.a); free(P, A.b)
    return { r = b }
  elseif B.a then
    local a = value_of(P, A)
    code[#code + 1] = vex(c.infix == "+" and I.fmadd or I.fnmadd, a, B.a, B.b) -- fma(+-b1, b2, a)
    free(P, B.a); free(P, B.b)
    return { r = a }
  end
  local a, b = value_of(P, A), value_of(P, B)
  code[#code + 1] = vex(c.infix == "+" and I.add or I.sub, a, a, b)
  free(P, b)
  return { r = a }
end

-- A plan: the streams, constants and code of one asm statement. p = {dtype, fma, env, v (the
-- variable along which loads are contiguous), text(e): the C text of an invariant}.
local function plan(p)
  local slots = {}
  local P = { dtype = p.dtype, env = p.env, v = p.v, text = p.text, streams = {}, order = {}, kind = {},
    isa = isa(p.dtype), fma = p.fma, code = {}, free = {}, stext = {}, writeback = {}, load_info = {} }
  function P.slot(text)
    if not slots[text] then
      P.stext[#P.stext + 1] = text
      slots[text] = #P.stext - 1
    end
    return slots[text]
  end
  return P
end

-- Runs fn(P) (which writes the loop body into P.code), with ymm `first`.. free; false when it
-- ran out of registers.
local function generate(P, first, fn)
  for r = NYMM - 1, first, -1 do P.free[#P.free + 1] = r end
  local ok, err = pcall(fn, P)
  if not ok and err ~= P then error(err, 0) end -- a bug, not a shortage of registers
  return ok
end

local function store(P, reg, kind, chunk)
  local base = stream_base(P, kind.stream)
  P.code[#P.code + 1] = vex(P.isa.store, reg, nil, { base = base, index = GP.rcx, disp = kind.disp + 32 * chunk })
  stream_done(P, kind.stream)
end

-- The C lines of the asm statement: C fills the table {constants, accumulators..., streams...};
-- the statement loads the accumulators (acc: C arrays of `chunks` registers each, ymm 0..),
-- runs P.code for rcx = 0, step, ... below limit (bytes), and stores them back.
-- outer = {n, target}: instead, for each of n iterations of a loop around (r15 counts; the
-- streams of P.inner advance), one accumulator from 0, its tree, lane 0 stored to target.
local function assemble(P, acc, chunks, step, limit, tree, outer)
  if limit > DISP_MAX then return nil end
  local T = P.dtype == "f64" and "double" or "float"
  local ptrs = { #P.stext > 0 and "kg_k" or "0" }
  for _, a in ipairs(acc) do ptrs[#ptrs + 1] = a end
  for _, s in ipairs(P.order) do ptrs[#ptrs + 1] = s.ptr end
  for _, buf in ipairs(P.writeback) do ptrs[#ptrs + 1] = "&" .. buf.cname end
  local asm = {}
  local function a(s) asm[#asm + 1] = s end
  local function accs(op)
    for i = 1, #acc do
      a("movq " .. 8 * i .. "(%%rax), %%rdx")
      for ch = 0, chunks - 1 do a(vex(op, (i - 1) * chunks + ch, nil, { base = GP.rdx, disp = 32 * ch })) end
    end
  end
  if #P.stext > 0 then a("movq 0(%%rax), %%r11") end
  accs(P.isa.load)
  for k, s in ipairs(P.order) do if s.reg then a("movq " .. 8 * (#acc + k) .. "(%%rax), %%" .. REG[s.reg]) end end
  if outer then
    a("movl $" .. outer.n .. ", %%r15d")
    a("2:")
    for r = 0, chunks - 1 do a(vex(P.isa.xor, r, r, r)) end
  end
  a("xorl %%ecx, %%ecx")
  a("1:")
  for _, l in ipairs(P.code) do a(l) end
  a("addq $" .. step .. ", %%rcx")
  a("cmpq $" .. limit .. ", %%rcx")
  a("jl 1b")
  if tree then -- each accumulator's lanes combined by emit_c's tree (width w -> w/2: lane i +=
    -- lane i + w/2), lane 0 stored: the registers' halves are those steps
    local I, t = P.isa, NYMM - 1
    for i = 1, outer and 1 or #acc do
      local r = (i - 1) * chunks
      if chunks == 2 then a(vex(I.add, r, r, r + 1)) end
      a(vex(I.high128, r, nil, t))
      a(vex(I.add128, r, r, t))
      if P.dtype == "f32" then
        a(vex(I.high64, t, r, r))
        a(vex(I.add128, r, r, t))
      end
      a(vex(I.lane1, t, P.dtype == "f64" and r or nil, r))
      a(vex(I.add128, r, r, t))
      if outer then
        local base = stream_base(P, outer.target.stream)
        a(vex(I.store1, r, nil, { base = base, disp = outer.target.disp }))
        for _, st in ipairs(P.inner.streams) do a("addq $" .. st.step .. ", %%" .. REG[st.reg]) end
        a("decl %%r15d")
        a("jnz 2b")
      else
        a("movq " .. 8 * i .. "(%%rax), %%rdx")
        a(vex(I.store1, r, nil, { base = GP.rdx, disp = 0 }))
      end
    end
  else
    accs(P.isa.store)
  end
  -- the locals the loop set: their last iteration's value, as the C loop leaves them
  for k, buf in ipairs(P.writeback) do
    local I, r, t = P.isa, P.locals[buf], P.free[1]
    a("movq " .. 8 * (#acc + #P.order + k) .. "(%%rax), %%rdx")
    a(vex(I.high128, r, nil, t))
    if P.dtype == "f32" then a(vex(I.lane3, t, nil, t)) else a(vex(I.lane1, t, t, t)) end
    a(vex(I.store1, t, nil, { base = GP.rdx, disp = 0 }))
  end
  a({ 0xc5, 0xf8, 0x77 }) -- vzeroupper
  local lines = { "{" }
  if #P.stext > 0 then lines[#lines + 1] = "    const " .. T .. " kg_k[] = {" .. table.concat(P.stext, ", ") .. "};" end
  lines[#lines + 1] = "    const void *kg_p[] = {" .. table.concat(ptrs, ", ") .. "};"
  lines[#lines + 1] = "    __asm__ volatile("
  -- consecutive instructions share a .byte line, BYTE_LINE at most (shorter text to build,
  -- keep and assemble; one instruction a line made seq_ffn's machine code 160 KB)
  local run, n = {}, 0
  local function flush()
    if #run > 0 then lines[#lines + 1] = '        ".byte ' .. table.concat(run, ",") .. '\\n"' end
    run, n = {}, 0
  end
  for _, s in ipairs(asm) do
    if type(s) == "table" then
      run[#run + 1] = s.text or text_of(s)
      n = n + 1
      if n == BYTE_LINE then flush() end
    else
      flush()
      lines[#lines + 1] = '        "' .. s .. '\\n"'
    end
  end
  flush()
  local saved = {}
  for k = SCRATCH_STREAMS + 1, math.min(#P.order, #STREAMS) do saved[#saved + 1] = ', "' .. STREAMS[k] .. '"' end
  if P.inner_used then saved[#saved + 1] = ', "r15"' end
  lines[#lines + 1] = "        : : \"a\"(kg_p) : KG_X86_CLOBBERS" .. table.concat(saved) .. ");"
  lines[#lines + 1] = "}"
  return lines
end

-- One asm statement for the reduces of group (each summed over p.v's whole steps: p.main
-- terms, p.L lanes); fuses[i]: reduce i's terms fuse into its lanes; acc[i]: its C array.
-- p.tree: the terms are all there (no rest, no outer summed loop): the statement also
-- combines the lanes (emit_c's tree) into acc[i][0].
local function statement(group, p, fuses, acc)
  local P = plan(p)
  for _, s in ipairs(group) do if not scan(s.expr, P) then return nil end end
  local chunks = p.L // (32 // ES[p.dtype])
  local ok = generate(P, #group * chunks, function()
    for i, s in ipairs(group) do
      for ch = 0, chunks - 1 do fold_into(P, (i - 1) * chunks + ch, gen(s.expr, ch, P), fuses[i]) end
    end
  end)
  if not ok then return nil end
  return assemble(P, acc, chunks, p.L * ES[p.dtype], p.main * ES[p.dtype], p.tree)
end

-- The math function an op calls (gen/mathlib.lua has the array form of each), or nil.
local function math_name(e)
  local c = ops[e.op].c
  return c and c.math and (type(c.math) == "function" and c.math(e.attr) or c.math) or nil
end

-- calls: nil (no math functions), or a list collecting them (a loop's: each called on an
-- argument that has none)
local function term_ok(e, v, calls)
  if e.k == "num" then return true end
  if e.k == "load" then
    if e.buf.role == "local" then return e.buf.size == 1 end
    local k = e.index.t[v] or 0
    return k == 0 or k == 1
  end
  if e.k ~= "op" then return false end
  if calls and math_name(e) then
    calls[#calls + 1] = e
    return term_ok(e.args[1], v)
  end
  if not arithmetic(ops[e.op].c) then return false end
  for _, a in ipairs(e.args) do if not term_ok(a, v, calls) then return false end end
  return true
end

-- Can reduce s become machine code (before emit knows its surroundings: it may still need
-- more streams or registers than there are, and then keeps its C loop)? The JIT's schedule
-- leaves such reduces loops rather than writing their terms out.
function x86.supported(s, dtype)
  if s.k ~= "reduce" or s.lanes % (32 // ES[dtype]) ~= 0 or (s.combine or "add") ~= "add" or s.lanes_out then
    return false
  end
  return term_ok(s.expr, s.rvars[#s.rvars].var)
end

-- The C lines replacing the main lane loop of a group of reduces: one asm statement per run
-- of reduces whose accumulators fit the registers; nil when any term is unsupported or the
-- lanes are not whole registers.
-- p = {dtype, fma, fuses (per reduce), v, main, L, env, acc (per reduce), text}
function x86.reduces(group, p)
  local per = 32 // ES[p.dtype]
  if p.L % per ~= 0 or p.main < p.L or p.L // per > MAX_ACC or (p.tree and p.L // per > 2) then return nil end
  for _, s in ipairs(group) do
    if (s.combine or "add") ~= "add" or s.lanes_out then return nil end
  end
  local each = MAX_ACC // (p.L // per)
  local lines = {}
  for first = 1, #group, each do
    local part, fuses, acc = {}, {}, {}
    for i = first, math.min(#group, first + each - 1) do
      part[#part + 1] = group[i]
      fuses[#fuses + 1] = p.fuses[i]
      acc[#acc + 1] = p.acc[i]
    end
    local l = statement(part, p, fuses, acc)
    if not l then return nil end
    for _, s in ipairs(l) do lines[#lines + 1] = s end
  end
  return lines
end

-- Loop s around one reduce r, whose terms are all in its lane loop (one summed axis, no rest)
-- and whose target moves with s: one asm statement for the whole loop (x86.reduces' code,
-- with s counted in r15, the accumulators from 0 and lane 0 stored to the target each time).
-- p = {dtype, fma, fuse (r's terms fuse into its lanes), env, text}; nil when unsupported.
function x86.reduce_loop(s, p)
  local r = s.body[1]
  if #s.body ~= 1 or r.k ~= "reduce" or #r.rvars ~= 1 or r.check or r.lanes_out or (r.combine or "add") ~= "add"
    or r.rvars[1].n % r.lanes ~= 0 or r.lanes % (32 // ES[p.dtype]) ~= 0 or r.lanes // (32 // ES[p.dtype]) > 2 then
    return nil
  end
  local v = r.rvars[1].var
  local P = plan({ dtype = p.dtype, fma = p.fma, env = p.env, v = v, text = p.text })
  P.inner, P.inner_used = { var = s.var, streams = {}, n = s.n }, true
  local target = { k = "load", buf = r.target.buf, index = r.target.index }
  if not scan(r.expr, P) or not scan(target, P) then return nil end
  local t = P.kind[target]
  if not (t.stream and t.broadcast and t.stream.reg) then return nil end -- an element moving with s
  for _, l in ipairs(loops.loads(r.expr, {})) do -- a value C reads once must not be one s writes
    if l.buf == r.target.buf and P.kind[l].slot then return nil end
  end
  local chunks = r.lanes // (32 // ES[p.dtype])
  if not generate(P, chunks, function()
    for ch = 0, chunks - 1 do fold_into(P, ch, gen(r.expr, ch, P), p.fuse) end
  end) then
    return nil
  end
  return assemble(P, {}, chunks, r.lanes * ES[p.dtype], r.rvars[1].n * ES[p.dtype], true, { n = s.n, target = t })
end

local MAX_STATEMENTS = 512 -- statements of one asm statement's loop body, loops written out
local loads_of = setmetatable({}, { __mode = "k" }) -- statement -> its loads (loops written out repeat it)

-- A loop whose statements store and sum into elements contiguous along its variable (target[i]
-- = e, target[i] += e) or into locals that each iteration sets before it reads them (a tile's
-- sums, block.lua), with loops inside (written out in the machine code): 8 (f32) or 4 (f64)
-- iterations at once do what the C loop does, statement by statement, so no two of them may
-- touch an element one of them writes (elementwise checks the offsets: the same element, or
-- a whole vector apart); each local is a register, and its last iteration's value is stored
-- back. Domain checks stay C. Math functions are called where the body has no loop; they
-- are computed first, for all iterations, after the statements that write what they read
-- (which then run first: nothing after them may write what they read, and they set no local).
-- Returns the list of the math calls and the number of those statements, or false.
function x86.loop_supported(s, dtype)
  if s.k ~= "loop" or s.n < 32 // ES[dtype] then return false end
  local written, sets, calls, nested, ok, count = {}, {}, {}, false, true, 0
  local function visit(list, depth, copies, looped)
    for _, t in ipairs(list) do
      if t.k == "loop" and (t.unroll or t.n == 1) then -- written out
        nested = true
        visit(t.body, depth + 1, copies * t.n, looped)
      elseif t.k == "loop" then -- a loop in the machine code, one level deep
        nested = true
        ok = ok and not looped
        visit(t.body, depth + 1, copies, true)
      elseif (t.k ~= "store" and t.k ~= "accum") or t.check or (t.combine or "add") ~= "add"
        or not term_ok(t.expr, s.var, depth == 0 and calls or nil) then
        ok = false
      elseif t.target.buf.role == "local" then
        ok = ok and t.target.buf.size == 1
        sets[t.target.buf] = true
      elseif (t.target.index.t[s.var] or 0) ~= 1 then
        ok = false
      else
        written[t.target.buf] = t.target.index
      end
      count = count + (t.k == "loop" and 0 or copies)
    end
  end
  visit(s.body, 0, 1, false)
  if not ok or count > MAX_STATEMENTS or (nested and #calls > 0) then return false end
  loops.walk(s.body, function(t) -- elementwise checks the offsets, once they are known
    if t.k == "loop" then return end
    for _, l in ipairs(loops.loads(t.expr, {})) do
      if written[l.buf] and (l.index.t[s.var] or 0) ~= 1 then ok = false end
    end
  end)
  -- the math calls' arguments may read what statements before the first call write: those
  -- statements then run first, for all iterations, if nothing after them writes what they read
  if not ok or #calls == 0 then return ok and calls, 0 end -- (with calls, no loop inside)
  local first, split = #s.body + 1, 0
  for i, t in ipairs(s.body) do
    local c = {}
    term_ok(t.expr, s.var, c)
    if #c > 0 and i < first then first = i end
  end
  for _, c in ipairs(calls) do
    for _, l in ipairs(loops.loads(c.args[1], {})) do
      if sets[l.buf] then return false end -- a local: its registers are gone by then
      for i, t in ipairs(s.body) do if t.target.buf == l.buf then split = math.max(split, i) end end
    end
  end
  if split >= first then return false end
  for j = 1, split do if s.body[j].target.buf.role == "local" then return false end end
  for i = split + 1, #s.body do
    for j = 1, split do
      for _, l in ipairs(loops.loads(s.body[j].expr, {})) do
        if l.buf == s.body[i].target.buf then ok = false end
      end
    end
  end
  return ok and calls, split
end

-- The asm statement of body (x86.loop_supported's statements) for v < main; results:
-- {expression, load} pairs, an expression (a math call) read as the load (of its results).
local function elementwise(body, p, v, main, results)
  local P = plan({ dtype = p.dtype, fma = p.fma, env = p.env, v = v, text = p.text })
  P.overflow = true -- no accumulators in the table: a stream's place in it is 8 * its number
  P.locals = {} -- local buffer -> its register, once the iteration has set it
  local outer, count = {}, 0 -- locals read before the loop sets them (their C values)
  local touched = {} -- buffer -> {ptr, mixed, invariant, reads = {disp...}, writes = {disp...}}
  local function touch(e, write)
    local k = P.kind[e]
    if not k or e.buf.role == "local" then return end
    local t = touched[e.buf] or { reads = {}, writes = {} }
    touched[e.buf] = t
    if k.slot or k.broadcast or k.stream.step then t.invariant = true; return end
    if t.ptr and t.ptr ~= k.stream.ptr then t.mixed = true end
    t.ptr = k.stream.ptr
    table.insert(write and t.writes or t.reads, k.disp)
  end
  local ok = generate(P, 0, function()
    local code, free = P.code, P.free
    local function need(ok) if not ok then error(P) end end
    local function run(list)
      for _, t in ipairs(list) do
        if t.k == "loop" and (t.unroll or t.n == 1) then -- written out
          for j = 0, t.n - 1 do
            P.env[t.var] = j
            run(t.body)
          end
          P.env[t.var] = nil
        elseif t.k == "loop" then -- a loop in the machine code (r15 counts), one level deep
          need(not P.inner)
          P.inner = { var = t.var, streams = {}, n = t.n }
          P.inner_used = true
          code[#code + 1] = "movl $" .. t.n .. ", %%r15d"
          code[#code + 1] = "2:"
          run(t.body)
          for _, st in ipairs(P.inner.streams) do code[#code + 1] = "addq $" .. st.step .. ", %%" .. REG[st.reg] end
          code[#code + 1] = "decl %%r15d"
          code[#code + 1] = "jnz 2b"
          for _, st in ipairs(P.inner.streams) do code[#code + 1] = "subq $" .. st.step * t.n .. ", %%" .. REG[st.reg] end
          P.inner = nil
        else
          count = count + 1
          need(count <= MAX_STATEMENTS)
          P.kind = {} -- an expression's addresses change with the loops written out
          for _, r in ipairs(results) do
            need(scan(r[2], P))
            P.kind[r[1]] = P.kind[r[2]]
          end
          need(scan(t.expr, P))
          local loads = loads_of[t] or loops.loads(t.expr, {})
          loads_of[t] = loads
          for _, l in ipairs(loads) do
            if l.buf.role == "local" and not P.locals[l.buf] then outer[l.buf] = true end
            touch(l, false)
          end
          local x = gen(t.expr, 0, P)
          local buf = t.target.buf
          if buf.role == "local" then
            local cur = P.locals[buf]
            need(not outer[buf] and (cur or t.k == "store"))
            if t.k == "accum" then
              fold_into(P, cur, x, true)
            elseif cur and P.inner then -- in a loop the code runs again: the local keeps its register
              local r = value_of(P, x)
              code[#code + 1] = vex(P.isa.mov, cur, nil, r)
              free[#free + 1] = r
            else
              local r = value_of(P, x)
              if cur then free[#free + 1] = cur end
              P.locals[buf] = r
              if not P.writeback[buf] then
                P.writeback[#P.writeback + 1] = buf
                P.writeback[buf] = true
              end
            end
          else
            local target = { k = "load", buf = buf, index = t.target.index }
            need(scan(target, P))
            touch(target, true)
            local r
            if t.k == "accum" then -- target + e, or fma(e1, e2, target): emit_c's fold
              r = gen(target, 0, P).r
              fold_into(P, r, x, true)
            else
              r = value_of(P, x)
            end
            store(P, r, P.kind[target], 0)
            free[#free + 1] = r
          end
        end
      end
    end
    run(body)
    local bytes = 32
    for _, t in pairs(touched) do
      if #t.writes > 0 then
        need(not t.invariant and not t.mixed)
        for _, w in ipairs(t.writes) do
          for _, list in ipairs({ t.reads, t.writes }) do
            for _, d in ipairs(list) do need(d == w or math.abs(d - w) >= bytes) end
          end
        end
      end
    end
  end)
  if not ok or (#P.writeback > 0 and #P.free == 0) then return nil end
  return assemble(P, {}, 0, 32, main * ES[p.dtype])
end

local MATH_STACK = 65536 -- bytes of arguments and results of math calls on the stack

-- Loop s's whole steps of 8 (f32) or 4 (f64) iterations as machine code, or nil; the caller
-- writes the rest. p = {dtype, fma, env, text}. Returns {lines, main (the iterations done),
-- math (the array math functions called, C names: they exist only in kerngen's JIT)}. Math
-- calls: their arguments into kg_a<j> (one asm statement), the library's array function
-- (gen/mathlib.lua) into kg_m<j>, which the loop then reads.
function x86.loop(s, p)
  local calls, split = x86.loop_supported(s, p.dtype)
  if not calls then return nil end
  local es = ES[p.dtype]
  local main = s.n - s.n % (32 // es)
  if 2 * #calls * main * es > MATH_STACK then return nil end
  local lines, results, math, args, arrays = {}, {}, {}, {}, {}
  for j, c in ipairs(calls) do
    local a, m = "kg_a" .. (j - 1), "kg_m" .. (j - 1)
    args[j] = { k = "store", target = { buf = { cname = a, role = "vm" }, index = aff.var(s.var) }, expr = c.args[1] }
    results[j] = { c, { k = "load", buf = { cname = m, role = "vm" }, index = aff.var(s.var) } }
    math[j] = mathlib.cname(math_name(c), p.dtype, p.fma)
    arrays[#arrays + 1] = a .. "[" .. main .. "], " .. m .. "[" .. main .. "]"
  end
  local before, rest = {}, {}
  for i, t in ipairs(s.body) do table.insert(i <= split and before or rest, t) end
  local body = elementwise(rest, p, s.var, main, results)
  if not body then return nil end
  if #calls > 0 then
    local first = #before > 0 and elementwise(before, p, s.var, main, {})
    local pre = elementwise(args, p, s.var, main, {})
    if (#before > 0 and not first) or not pre then return nil end
    lines[1] = "{"
    lines[2] = "    " .. (p.dtype == "f64" and "double " or "float ") .. table.concat(arrays, ", ") .. ";"
    for _, l in ipairs(first or {}) do lines[#lines + 1] = "    " .. l end
    for _, l in ipairs(pre) do lines[#lines + 1] = "    " .. l end
    for j, name in ipairs(math) do lines[#lines + 1] = "    " .. name .. "(kg_a" .. (j - 1) .. ", kg_m" .. (j - 1) .. ", " .. main .. ");" end
  end
  for _, l in ipairs(body) do lines[#lines + 1] = (#calls > 0 and "    " or "") .. l end
  if #calls > 0 then lines[#lines + 1] = "}" end
  return { lines = lines, main = main, math = #calls > 0 and math or nil }
end

-- templates/x86.c.in's values: the registers every statement may change (the scratch ones
-- and the streams' first SCRATCH_STREAMS; the vector ones apart, for compilers that name
-- them), and the declarations of the array math functions in `used` (a set of C names).
function x86.template_values(used, dtype)
  local T, names, out = dtype == "f64" and "double" or "float", {}, {}
  for name in pairs(used) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do out[#out + 1] = "void " .. name .. "(const " .. T .. " *, " .. T .. " *, int);" end
  local gp, vec = { '"rcx"' }, {}
  for k = 1, SCRATCH_STREAMS do gp[#gp + 1] = '"' .. STREAMS[k] .. '"' end
  gp[#gp + 1] = '"r11", "memory"'
  for r = 0, NYMM - 1 do vec[#vec + 1] = '"xmm' .. r .. '"' end
  return { vmath = table.concat(out, "\n"), clobbers = table.concat(gp, ", "), vector_clobbers = table.concat(vec, ", ") }
end

return x86
