-- fuse: loop fusion, array contraction and the workspace plan, on the loop IR (loops.lua).
--
-- lower gives one loop nest per stored value. Fusion merges consecutive loops of the same
-- extent when that cannot change what any statement reads: every buffer one loop writes and
-- the other accesses is touched "slab by slab", iteration v touching only elements [s*v,
-- s*v + s) of it in both loops. Then a row's statistics and its normalization, or dx, dgamma
-- and dbeta of a LayerNorm VJP, run in one sweep over the rows; inner loops fuse the same way.
-- A zero-initialization (lower's init statements) moves ahead of a loop that does not touch
-- its buffer, so accumulations fuse with their neighbours. A loop computing a math function
-- (GELU) is not fused into one holding a dot product per iteration (it would run scalar).
--
-- Contraction: a workspace buffer accessed only slab by slab inside one loop needs only one
-- slab: it shrinks to s elements, and to a C local ("local" buffer) when s is 1. So row-sized
-- workspace replaces whole intermediate tensors.
--
-- In place (in_place, part of the plan): a row computed elementwise from a row that dies in
-- the same loop takes that row's place.
--
-- Workspace plan: a buffer is live from the first top-level statement that touches it to the
-- last; live buffers never overlap (first fit), which is what the restrict pointers promise.
--
-- None of this changes an expression or the order of the terms of a sum: the results are
-- bit-identical to the unfused loops (tests compare them, --fuse none).

local loops = require("loops")
local ops = require("ops")

local aff = loops.aff

local fuse = {}

---------------------------------------------------------------------------------------------
-- Canonical loop variables: i<depth>, so the loops that fuse have the same variable and no
-- inner variable can collide with an outer one.

-- index with every variable renamed through map at once (false: the variable is 0)
local function rename(index, map)
  local r = { c = index.c, t = {} }
  for v, k in pairs(index.t) do
    local to = map[v]
    if to == nil then to = v end
    if to then r.t[to] = (r.t[to] or 0) + k end
  end
  return r
end

local function rename_expr(e, map)
  return loops.map_expr(e, function(index) return rename(index, map) end)
end

-- Returns body with its loops renamed and its extent-1 loops dissolved (their variable is 0:
-- they would only keep loops from matching).
local function canonical(body, depth, map)
  local out = {}
  for _, s in ipairs(body) do
    if s.k == "loop" then
      local inner = {}
      for k, v in pairs(map) do inner[k] = v end
      if s.n == 1 then
        inner[s.var] = false
        for _, t in ipairs(canonical(s.body, depth, inner)) do
          t.init = t.init or s.init
          out[#out + 1] = t
        end
      else
        inner[s.var] = "i" .. depth
        s.var = "i" .. depth
        s.body = canonical(s.body, depth + 1, inner)
        out[#out + 1] = s
      end
    else
      s.target = { buf = s.target.buf, index = rename(s.target.index, map) }
      s.expr = rename_expr(s.expr, map)
      out[#out + 1] = s
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Fusion

-- A loop that touches a big span of a buffer in every iteration (a weight matrix, or its
-- gradient, in every row) stays alone: fused into a sweep over rows it would stream that
-- buffer through the caches once per row (a gradient read and written), where block.lua's
-- tiles and jammed rows stream it once per tile. From a 32 KB L1 cache of floats: at 1 << 16
-- elements, seq_ffn 8x64x256 (weights of 16384) ran row by row, its backward 1.8x slower
-- (22.1 -> 12.1 us), forward 1.3x.
fuse.STREAM_LIMIT = 1 << 13 -- elements

local function streams(loop, acc) -- acc: loops.accesses(loop.body)
  for _, x in ipairs(acc) do
    if x.buf.size >= fuse.STREAM_LIMIT and not x.index.t[loop.var] then
      local span = 1 -- elements one iteration touches (variables of enclosing loops fixed)
      for v, k in pairs(x.index.t) do
        if x.ranges[v] then span = span + math.abs(k) * (x.ranges[v] - 1) end
      end
      if span >= fuse.STREAM_LIMIT then return true end
    end
  end
  return false
end

-- A loop whose body stores a math function's result (exp, GELU...) directly stays apart from a
-- loop whose body holds a loop or a reduction (a dot product per iteration): fused, the calls
-- would run one at a time inside a loop gcc cannot vectorize, where alone they run as vectors
-- (seq_ffn 8x64x256 forward: GELU after each hidden unit's dot product cost 10x the matrix
-- products).
local function calls_math(e)
  if e.k == "op" then
    local c = ops[e.op].c
    if c and c.math then return true end
    for _, a in ipairs(e.args) do if calls_math(a) then return true end end
  elseif e.k == "ifzero" then return calls_math(e.e)
  elseif e.k == "tree" then for _, t in ipairs(e.terms) do if calls_math(t) then return true end end end
  return false
end

-- (does body hold a loop or a reduction, does it store a math function's result directly)
local function body_kind(body)
  local nested, math = false, false
  for _, t in ipairs(body) do
    if t.k == "loop" or t.k == "reduce" then nested = true
    elseif t.k == "store" and calls_math(t.expr) then math = true end
  end
  return nested, math
end

-- loops.slab() of an access (a record of loops.accesses) for variable v, computed once per access.
local function slab_of(x, v)
  if x.slab_var ~= v then x.slab_var, x.slab_stride, x.slab_base = v, loops.slab(x.index, v, x.ranges) end
  return x.slab_stride, x.slab_base
end

-- May loop b run fused with loop a (same variable and extent, a first)? by_buf: the accesses
-- of a's body by buffer; open: streams(a) and body_kind(a.body); vb: the accesses of b's body.
local function fusable(a, by_buf, open, b, vb)
  if open.streams or streams(b, vb) then return false end
  local b_nested, b_math = body_kind(b.body)
  if (open.nested and b_math) or (open.math and b_nested) then return false end
  for _, y in ipairs(vb) do
    for _, x in ipairs(by_buf[y.buf] or {}) do
      if x.write or y.write then
        local sx, bx = slab_of(x, a.var)
        local sy, by = slab_of(y, a.var)
        if not sx or sx ~= sy or bx ~= by then return false end
      end
    end
  end
  return true
end

-- Sweeps: inside a loop body (a row of a normalization), the statements in order of the passes
-- over the row they need. A sum's sweep (a reduce's, or a loop of accumulations': GroupNorm's
-- channel-last sums) is one more than the largest of the statements it depends on, any other
-- statement's the largest (0 with none); statements are taken by sweep, in a sweep reduces,
-- loops of sums the row reads later, scalars, other loops (also those of sums nothing in the
-- row reads: dgamma's accumulation over rows), else in their own order, whenever what they
-- depend on has been placed. Reduces of one sweep thus stand side by side and share one lane
-- loop (emit_c): a LayerNorm VJP's mean and sum(dy gamma), then its variance and sum(dy gamma
-- centered), whatever order the graph listed them in, and the loops of a sweep fuse (GroupNorm
-- 8x16x16x128 JVP 10% faster; RMSNorm 4096x1024 vjp_saved 1.3x: dgamma joins dx's loop, after
-- the scalars dx needs). Only independent statements change places (a dependency: a buffer one
-- writes, the other touches).
local function order_sweeps(list)
  local n, rw = #list, {}
  for i, s in ipairs(list) do
    local r, w = loops.touches({ s }, {}, {})
    rw[i] = { r = r, w = w }
  end
  local deps, sweep, users, sums = {}, {}, {}, {}
  for i, s in ipairs(list) do -- a reduce, or a loop of accumulations (a column-form sum)
    sums[i] = s.k == "reduce"
    if s.k == "loop" then loops.walk(s.body, function(t) if t.k == "accum" then sums[i] = true end end) end
  end
  -- i depends on the last statement before it that wrote a buffer it touches, and, for a buffer
  -- it writes, on the statements that read it since (the other conflicts follow through
  -- those: the same order as with every conflicting pair, in time linear in the accesses)
  local writer, readers = {}, {} -- buf -> last statement writing it; -> statements reading it since
  for i = 1, n do
    deps[i], users[i], sweep[i] = 0, {}, 0
    local on = {}
    local function after(j)
      if j and not on[j] then
        on[j] = true
        deps[i] = deps[i] + 1
        users[j][#users[j] + 1] = i
        sweep[i] = math.max(sweep[i], sweep[j])
      end
    end
    for buf in pairs(rw[i].r) do after(writer[buf]) end
    for buf in pairs(rw[i].w) do
      after(writer[buf])
      for _, j in ipairs(readers[buf] or {}) do after(j) end
    end
    for buf in pairs(rw[i].w) do writer[buf], readers[buf] = i, nil end
    for buf in pairs(rw[i].r) do
      if not rw[i].w[buf] then
        local l = readers[buf] or {}
        readers[buf] = l
        l[#l + 1] = i
      end
    end
    if sums[i] then sweep[i] = sweep[i] + 1 end
  end
  local class = { reduce = 0, store = 1, accum = 1, loop = 2 }
  local function before(i, j) -- a lower sweep; reduces, loops of sums, stores, loops; the original order
    if sweep[i] ~= sweep[j] then return sweep[i] < sweep[j] end
    local function cls(x) return (sums[x] and list[x].k == "loop" and #users[x] > 0) and 0.5 or class[list[x].k] end
    local ci, cj = cls(i), cls(j)
    if ci ~= cj then return ci < cj end
    return i < j
  end
  local ready, out = {}, {}
  for i = 1, n do if deps[i] == 0 then ready[#ready + 1] = i end end
  while #ready > 0 do
    local best = 1
    for k = 2, #ready do if before(ready[k], ready[best]) then best = k end end
    local i = table.remove(ready, best)
    out[#out + 1] = list[i]
    for _, u in ipairs(users[i]) do
      deps[u] = deps[u] - 1
      if deps[u] == 0 then ready[#ready + 1] = u end
    end
  end
  return out
end

-- The open group's accesses (by buffer) and streaming grow as loops fuse into it (a loop's
-- accesses are those of its body's statements, in order).
local function fuse_list(list)
  local out, group, gbufs, open = {}, nil, nil, nil -- open: the group's streams(), body_kind()
  local function add(acc)
    for _, x in ipairs(acc) do
      local l = gbufs[x.buf]
      if l then l[#l + 1] = x else gbufs[x.buf] = { x } end
    end
  end
  for _, s in ipairs(list) do
    local sacc = s.k == "loop" and loops.accesses(s.body)
    if s.k == "loop" and group and group.n == s.n and fusable(group, gbufs, open, s, sacc) then
      for _, t in ipairs(s.body) do group.body[#group.body + 1] = t end
      add(sacc)
      local nested, math = body_kind(s.body)
      open.streams, open.nested, open.math = open.streams or streams(s, sacc), open.nested or nested, open.math or math
    elseif s.init and group and not gbufs[s.target and s.target.buf or loops.accesses({ s })[1].buf] then
      table.insert(out, #out, s) -- a zero-initialization goes ahead of the open loop
    else
      out[#out + 1] = s
      group = s.k == "loop" and s or nil
      if group then
        local nested, math = body_kind(s.body)
        gbufs, open = {}, { streams = streams(s, sacc), nested = nested, math = math }
        add(sacc)
      end
    end
  end
  for _, s in ipairs(out) do if s.k == "loop" then s.body = fuse_list(order_sweeps(s.body)) end end
  return out
end

---------------------------------------------------------------------------------------------
-- Contraction

-- The buffers each statement under body touches (statement -> set; a loop's is its body's).
local function touched(body, sets)
  for _, s in ipairs(body) do
    local set = {}
    if s.k == "loop" then
      touched(s.body, sets)
      for _, t in ipairs(s.body) do for b in pairs(sets[t]) do set[b] = true end end
    else
      loops.touches({ s }, set, set)
    end
    sets[s] = set
  end
  return sets
end

-- The loops of top around every access to buf, outermost first: descend while all of them lie
-- in one inner loop. sets: touched(); inner: a memo, loop -> buf -> the one statement of its
-- body that touches buf if that is a loop, else false (built once per loop, so that many
-- buffers in one long body cost their accesses, not the body's length each).
local function enclosing(top, buf, sets, inner)
  local chain, s = {}, top
  while s and s.k == "loop" do
    chain[#chain + 1] = s
    local by = inner[s]
    if not by then
      by = {}
      for _, t in ipairs(s.body) do
        for b in pairs(sets[t]) do
          if by[b] == nil and t.k == "loop" then by[b] = t else by[b] = false end
        end
      end
      inner[s] = by
    end
    s = by[buf] or nil
  end
  return chain
end

-- A workspace buffer touched inside exactly one top-level statement, slab by slab in one of
-- the loops around its accesses (the deepest such loop), keeps one slab.
local function contract(F)
  local where = {} -- buf -> index of the one top-level statement touching it, or false
  local acc_of, sets, inner = {}, touched(F.body, {}), {} -- acc_of: buf -> its accesses there
  for i, top in ipairs(F.body) do
    for _, x in ipairs(loops.accesses({ top })) do
      if x.buf.role == "ws" then
        if where[x.buf] == nil then where[x.buf] = i elseif where[x.buf] ~= i then where[x.buf] = false end
        local l = acc_of[x.buf] or {}
        acc_of[x.buf] = l
        l[#l + 1] = x
      end
    end
  end
  local shrink = {} -- buf -> { var, stride }
  for _, buf in ipairs(F.bufs) do
    local i = where[buf]
    if i then
      local acc = acc_of[buf]
      local chain = enclosing(F.body[i], buf, sets, inner)
      for k = #chain, 1, -1 do
        -- the loops around chain[k] are fixed during it: their variables place the slab (base),
        -- the same for every access, so an element is written and read in one iteration
        local v, stride, base, outer = chain[k].var, nil, nil, {}
        for j = 1, k - 1 do outer[chain[j].var] = true end
        for _, x in ipairs(acc) do
          local ranges = {}
          for u, n in pairs(x.ranges) do if not outer[u] then ranges[u] = n end end
          local st, b = loops.slab(x.index, v, ranges)
          if not st or (stride and (st ~= stride or b ~= base)) then stride = false; break end
          stride, base = st, b
        end
        if stride then shrink[buf] = { var = v, stride = stride, outer = outer }; break end
      end
    end
  end
  local function fix(index, buf) -- drop the slab term
    local s = shrink[buf]
    if not s then return index end
    local r = { c = index.c, t = {} }
    for x, k in pairs(index.t) do if x ~= s.var and not s.outer[x] then r.t[x] = k end end
    return r
  end
  loops.walk(F.body, function(s)
    if s.k == "loop" then return end
    s.target = { buf = s.target.buf, index = fix(s.target.index, s.target.buf) }
    for _, l in ipairs(loops.loads(s.expr, {})) do l.index = fix(l.index, l.buf) end
  end)
  for _, buf in ipairs(F.bufs) do -- one-element buffers become C locals (emit_c names them)
    local s = shrink[buf]
    if s then buf.size = s.stride end
    if s and s.stride == 1 then buf.role = "local" end
  end
end

---------------------------------------------------------------------------------------------
-- In place: `for v: ... B[v] = f(A[v], ...) ...`, where A's life ends in that loop and B's
-- begins there, stores B into A's element of the same iteration: one row of workspace instead
-- of two (a VJP's gradient row before and after an activation's derivative). Conditions: A and
-- B are workspace rows of the loop's extent, indexed by its variable alone in the loop; A is
-- written in full (by a loop that does not read it) before anything in the body reads it, so
-- no value of A crosses an iteration of the loops around; nothing after the store reads A,
-- nothing before the loop touches B, and neither is touched outside this body. Same values,
-- same order: only addresses change.

local function counts(acc)
  local n = {}
  for _, x in ipairs(acc) do n[x.buf] = (n[x.buf] or 0) + 1 end
  return n
end

local function is_var(index, v)
  if index.c ~= 0 then return false end
  for u, k in pairs(index.t) do if u ~= v or k ~= 1 then return false end end
  return index.t[v] == 1
end

-- Does statement s (a loop) store every element of buf without reading buf?
local function defines(s, buf)
  if s.k ~= "loop" or s.n ~= buf.size then return false end
  local stores = false
  for _, t in ipairs(s.body) do
    if t.k == "store" and t.target.buf == buf and is_var(t.target.index, s.var) then stores = true end
  end
  for _, x in ipairs(loops.accesses({ s })) do if x.buf == buf and not x.write then return false end end
  return stores
end

-- at: where a body's statements touch each buffer (at.first[b], at.last[b]: the first and last
-- statement; at.n[b]: the accesses in the body), per(q) the access counts of body[q] by buffer;
-- total: the function's access counts.
local function try_in_place(body, where, per, p, total, rename)
  local s = body[p]
  for i, st in ipairs(s.body) do
    local B = st.k == "store" and st.target.buf
    if B and B.role == "ws" and B.size == s.n and is_var(st.target.index, s.var) then
      for _, l in ipairs(loops.loads(st.expr, {})) do
        local A = l.buf
        local at = A ~= B and A.role == "ws" and A.size == B.size and is_var(l.index, s.var) and where()
        -- B touched first here, A last here, and neither outside this body
        if at and at.first[B] == p and at.last[A] == p and at.n[A] == total[A] and at.n[B] == total[B] then
          -- A defined in full by the first statement of the body that touches it
          local q = at.first[A]
          local ok = q < p and defines(body[q], A)
          -- in s: A only read, at v, and not after the store
          for j, t in ipairs(s.body) do
            if t.k == "loop" then ok = ok and not counts(loops.accesses({ t }))[A]
            else
              if t.target.buf == A then ok = false end
              for _, m in ipairs(loops.loads(t.expr, {})) do
                if m.buf == A and (j > i or not is_var(m.index, s.var)) then ok = false end
              end
            end
          end
          if ok then rename[B] = A; return true end
        end
      end
    end
  end
  return false
end

local function in_place(F)
  -- One rename at a time, applied before the search goes on at the same loop: a row that took
  -- another's place can give its own in turn. A rename merges B into A, both touched only in
  -- this body and from the loop before p on, so no earlier loop's candidate changes (the search
  -- once began again at the top of the function after each rename: hours for a chain of 1000
  -- maxima).
  local total = counts(loops.accesses(F.body))
  local function visit(body)
    local per_q, at = {}, nil -- built when a candidate needs them: most bodies have none
    local function per(q)
      per_q[q] = per_q[q] or counts(loops.accesses({ body[q] }))
      return per_q[q]
    end
    local function where()
      if not at then
        at = { first = {}, last = {}, n = {} }
        for q = 1, #body do
          for b, k in pairs(per(q)) do
            at.first[b] = at.first[b] or q
            at.last[b], at.n[b] = q, (at.n[b] or 0) + k
          end
        end
      end
      return at
    end
    local function merge(c, A, B) c[A], c[B] = (c[A] or 0) + (c[B] or 0), nil end
    local p, renamed = 1, false
    while p <= #body do
      local s, rename = body[p], {}
      if s.k == "loop" and try_in_place(body, where, per, p, total, rename) then
        local B, A = next(rename)
        for q = p, at.last[B] do -- every access of B is here (try_in_place checked)
          if per(q)[B] then
            loops.walk({ body[q] }, function(st)
              if st.k == "loop" then return end
              if st.target.buf == B then st.target = { buf = A, index = st.target.index } end
              for _, l in ipairs(loops.loads(st.expr, {})) do if l.buf == B then l.buf = A end end
            end)
            merge(per_q[q], A, B)
          end
        end
        at.last[A], at.first[B], at.last[B] = math.max(at.last[A], at.last[B]), nil, nil
        merge(at.n, A, B)
        merge(total, A, B)
        renamed = true
      else
        local inside = s.k == "loop" and visit(s.body)
        renamed = renamed or inside
        if inside and at then
          -- renames inside s merged some of its buffers, which only s touches here
          local before = per(p)
          per_q[p] = counts(loops.accesses({ s }))
          for b in pairs(before) do
            if not per_q[p][b] then at.first[b], at.last[b], at.n[b] = nil, nil, nil end
          end
          for b, k in pairs(per_q[p]) do at.n[b] = (at.n[b] or 0) - (before[b] or 0) + k end
        elseif s.k == "loop" then
          per_q[p] = nil
        end
        p = p + 1
      end
    end
    return renamed
  end
  visit(F.body)
end

---------------------------------------------------------------------------------------------
-- Workspace plan

local function plan(F)
  local first, last = {}, {}
  for i, top in ipairs(F.body) do
    for _, x in ipairs(loops.accesses({ top })) do
      if x.buf.role == "ws" then
        first[x.buf] = first[x.buf] or i
        last[x.buf] = i
      end
    end
  end
  local free, high, peak = {}, 0, 0 -- free: sorted list of {start, size}
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
  for i = 1, #F.body do
    for _, b in ipairs(F.bufs) do
      if first[b] == i then
        b.base = alloc(b.size)
        peak = math.max(peak, high)
      end
    end
    for _, b in ipairs(F.bufs) do if last[b] == i then release(b) end end
  end
  return peak
end

-- Fuses and contracts F in place (unless policy is "none"); returns F.
function fuse.run(F, policy)
  F.body = canonical(F.body, 0, {})
  if policy ~= "none" then
    F.body = fuse_list(F.body)
    contract(F)
  end
  return F
end

-- The workspace plan (after the last pass that changes the top-level statements): sets every
-- workspace buffer's base and F.ws_size.
function fuse.plan(F)
  in_place(F)
  F.ws_size = plan(F)
  return F
end

return fuse
