-- block: register blocking of the loop IR's matrix products (after fuse, before schedule).
--
-- The three products of a linear layer reach the loop IR as sums (lower's memory-order forms):
--   y  = x w^T   row form: for r, o: y[r][o] = sum_i x[r][i] w[o][i]   (a reduce, lanes on i)
--   dx = g w     column form: for r, o, i: dx[r][i] += g[r][o] w[o][i]
--   dw = g^T x   column form: for r, o, i: dw[o][i] += g[r][o] x[r][i]
-- Written so, each streams a whole weight matrix once per row (or a gradient matrix through
-- memory once per row). Blocking computes a tile of TILE outputs along one more axis at once,
-- so every load of the shared operand serves TILE outputs:
--   accumulation nests: the summed loops move inside the kept ones and TILE outputs along a kept
--     loop accumulate in C locals (for rt, i: s_k = dx[..]; for o: s_k += ...; dx[..] = s_k),
--     the shape gcc vectorizes across i ("outer-loop vectorization") with the tile in registers;
--   reduce statements: the kept loop around them is unrolled and jammed, JAM reduce statements
--     (fewer where their rows would crowd one set of the L1 cache) in one body, which emit_c
--     runs in one lane loop (sharing the w[o][i] loads); inside an imperfect nest, an output
--     loop is jammed (sharing the x[r][i] loads); a shared operand beyond L2 is read in tiles
--     of outputs around the row blocks; jammed rows beyond L1 are summed a chunk at a time,
--     the lanes carried in the workspace (reduce.lanes_in, lanes_out), and with fused products
--     outputs are jammed beside the rows there (4 crowded rows x 4 outputs).
-- Some nests get a second form for 32 vector registers of 512 bits (guard "KG_WIDE", the first
-- form then "!KG_WIDE"; emit_c defines and calls each under #if): more sums side by side, which
-- with 16 registers of 256 bits (AVX2) would spill. Accumulation tiles also get a form in
-- explicit lane loops for compilers that vectorize only innermost loops (guard
-- "KG_TILE_LANES", templates/forms.c.in: clang). All forms add the same terms in the same order.
-- A row loop whose body sums along long rows runs 2-4 rows through it together (rows side by
-- side: their sums' chains overlap). Nested loops that index memory in row-major order are
-- also coalesced into one, a per-group value read by a short inner loop is expanded into a
-- channel-wide row (GroupNorm), and a reduce over the row its preceding loop stores joins that
-- loop (below). block.run leaves out the jams and rows side by side for target "scalar" and
-- for unroll "auto" (the JIT's tcc text).
-- Every output still adds its terms in the same order (the summed loops keep their order; a
-- reduce keeps its lanes), so blocking never changes a bit; tests compare with --fuse none.

local loops = require("loops")
local util = require("util")

local aff = loops.aff

local block = {}

block.TILE = 8        -- outputs per tile of an accumulation (C locals)
block.JAM = 8         -- reduce statements jammed into one lane loop
block.MIN_WORK = 4096 -- nests of fewer terms in all are left alone
block.LANE_FUSE_MIN = 8 -- a reduce joins its producer loop from this many lane-widths on: a
                        -- shorter row is written out, its lanes in registers

-- The loops of a perfect nest (one statement per loop level) and its statement.
local function perfect(s)
  local chain = {}
  while s.k == "loop" do
    if #s.body ~= 1 then return nil end
    chain[#chain + 1] = s
    s = s.body[1]
  end
  return chain, s
end

local function subst_expr(e, var, form)
  return loops.map_expr(e, function(index) return aff.subst(index, var, form) end)
end

local function ref_subst(ref, var, form) return { buf = ref.buf, index = aff.subst(ref.index, var, form) } end

-- s with var replaced by form and the buffers of rename (old -> new) replaced.
local function copy_stmt(s, var, form, rename)
  local c = {}
  for k, v in pairs(s) do c[k] = v end
  if s.k == "loop" then
    c.body = {}
    for i, t in ipairs(s.body) do c.body[i] = copy_stmt(t, var, form, rename) end
    return c
  end
  local function index(ix) return aff.subst(ix, var, form) end
  c.target = { buf = rename[s.target.buf] or s.target.buf, index = index(s.target.index) }
  c.expr = loops.map_expr(s.expr, index, function(l)
    local b = rename[l.buf]
    return b and { k = "load", buf = b, index = l.index } or l
  end)
  return c
end

-- Does the expression read something that does not depend on var (a load the tile can share)?
local function shares(e, var)
  for _, l in ipairs(loops.loads(e, {})) do if not l.index.t[var] then return true end end
  return false
end

-- Does a statement under body, other than those under skip, read buf?
local function read_elsewhere(body, buf, skip)
  for _, s in ipairs(body) do
    if s.k == "loop" then
      if s ~= skip and read_elsewhere(s.body, buf, skip) then return true end
    else
      for _, l in ipairs(loops.loads(s.expr, {})) do if l.buf == buf then return true end end
    end
  end
  return false
end

---------------------------------------------------------------------------------------------
-- The L1 cache's sets: rows whose byte stride is a multiple of 4 KB all map to the same set of
-- a 32 KB 8-way L1 (48 KB 12-way: the same period); more than a few such rows read together
-- evict each other. ALIAS_WAYS: the rows of one buffer allowed in one set.
block.ALIAS_WAYS = 4
block.L1_SET_PERIOD, block.LINE = 4096, 64 -- bytes after which L1 sets repeat; a line

-- Would n rows `stride` bytes apart put more than ALIAS_WAYS of their lines in one set? (Rows
-- closer than a line share it: one line.)
local function crowds(stride, n)
  local per, last = {}, nil
  for c = 0, n - 1 do
    local line = c * stride // block.LINE
    if line ~= last then
      local set = line % (block.L1_SET_PERIOD // block.LINE)
      per[set] = (per[set] or 0) + 1
      if per[set] > block.ALIAS_WAYS then return true end
    end
    last = line
  end
  return false
end

---------------------------------------------------------------------------------------------
-- Accumulations: for kept K (tiled), other kept loops, summed loops: locals per tile

-- A C local: one element, or an array of n indexed by var.
local function new_local(F, n, var)
  local b = { cname = "t", role = "local", size = n or 1, id = #F.bufs }
  F.bufs[#F.bufs + 1] = b
  return { buf = b, index = var and aff.var(var) or aff.const(0) }
end

-- K's iterations t at a time: a loop over the main part whose body is copies(base, t) (the
-- statements of iterations base .. base + t - 1), then copies for the remainder.
local function split_by(K, t, copies)
  local main, out = K.n - K.n % t, {}
  if main > 0 then out[1] = { k = "loop", var = K.var, n = main // t, node = K.node, body = copies(aff.scale(aff.var(K.var), t), t) } end
  if K.n % t > 0 then for _, s in ipairs(copies(aff.const(main), K.n % t)) do out[#out + 1] = s end end
  return out
end

-- A long summed loop (dx = g w: 768 or 3072 rows of w, each 3 or 12 KB apart) is run a chunk
-- at a time around everything else: the tiles' outputs go back to memory between chunks, but
-- every tile of rows reads the chunk's rows of w while they are in L2, and the column strips
-- read within a chunk stay close. Every output still adds its terms in order. (seq_ffn
-- 64x768x3072 backward, dx = g w and dh = dy w2: chunks inside the row tiles, 12% faster than
-- no chunks; around them, 1.6x faster again: w was read from beyond L2 once per row tile.)
block.ACCUM_CHUNK = 64 -- summed iterations per chunk, for summed loops of more than 4 chunks

-- A tile's shared operand whose rows crowd an L1 set (dW1 = dh^T x: the tile's 8 columns of
-- dh, one line in each of 64 rows 12 KB apart, read again for every vector of outputs) is first
-- copied into a workspace panel, row after row (P[t s + k] for summed s and tile column k), so
-- the tile reads 2 KB in a row: seq_ffn 64x768x3072's dW1 nest 5.3 -> 3.1 ms, the same bits (a
-- copy; the panel is t * S.n elements of workspace). Only for gcc's text (simd): the JIT's and
-- a Cortex-M's tiles keep their loads.

-- The same affine form?
local function same_index(a, b)
  if a.c ~= b.c then return false end
  for v, k in pairs(a.t) do if b.t[v] ~= k then return false end end
  for v in pairs(b.t) do if not a.t[v] then return false end end
  return true
end

-- The loads of st.expr to pack for the tile (K, summed S): read-only, indexed by K's and S's
-- variables only, their rows (consecutive s) crowding one L1 set; each load once.
local function packed_loads(st, K, S, elem)
  local out = {}
  for _, l in ipairs(loops.loads(st.expr, {})) do
    local only = true
    for v in pairs(l.index.t) do if v ~= K.var and v ~= S.var then only = false end end
    local dup = false
    for _, o in ipairs(out) do if o.buf == l.buf and same_index(o.index, l.index) then dup = true end end
    if only and not dup and l.buf ~= st.target.buf and l.index.t[K.var] and l.index.t[S.var]
      and crowds(l.index.t[S.var] * elem, S.n) then
      out[#out + 1] = l
    end
  end
  return out
end

-- Column panels. An accumulation's other operand, the one vectorized across the tile's columns
-- (w of dx = g w, x of dW = g^T x), read a row per summed step, comes from beyond L1 when its
-- rows crowd one set (seq_ffn 64x768x3072's dh = dy w2: a chunk's 64 rows 12 KB apart, every
-- line reread by each of the 8 row tiles from L2). So its rows (the chunk's, or all of a
-- short sum's) are copied a block of columns at a time into a panel of PANEL_BYTES
-- (P[B s + j]), and every tile runs over the block from L1:
--   for c: for tiles: for i: ... w[C c + s][i]   becomes
--   for c: for ib < n/B: P = w[C c + s][B ib + j]; for tiles: for j < B: ... P[B s + j]
-- The tiles' own panels of their shared operand (above: g's columns in dW = g^T x) are then
-- copied once for all tiles, before the blocks, when those stay in L2 (PANEL_ALL_BYTES; else
-- no column panel: copied again for every block, seq_ffn 64x768x3072's dW1 ran slower).
-- In models of seq_ffn 64x768x3072's nests: dh = dy w2 3.1 -> 2.0 ms (B 64 and 128 alike, 256
-- slower), dW2 = dy^T h 3.2 -> 1.8 (2.3 with dy's panels copied per block). The same bits (a
-- copy; every output's terms in the same order).
block.PANEL_BYTES = 16384
block.PANEL_ALL_BYTES = 1 << 18 -- the tiles' own panels copied all at once, at most

-- The column panel of an accumulation (K tiled, S summed, I the innermost kept loop, R of S's
-- iterations in a panel: the chunk or all): { load, width } or nil.
local function column_panel(st, K, S, I, R, elem)
  local B = block.PANEL_BYTES // (R * elem)
  -- (a block a line wide at least; two blocks at least: a single block was not measured)
  if B * elem < block.LINE or I.n % B ~= 0 or I.n == B then return nil end
  local loads, found = loops.loads(st.expr, {}), nil
  for _, l in ipairs(loads) do
    local ix = l.index.t
    if ix[I.var] == 1 and ix[S.var] and not ix[K.var] and l.buf ~= st.target.buf then
      for v in pairs(ix) do if v ~= I.var and v ~= S.var then return nil end end
      if found then return nil end -- one such load
      found = l
    end
  end
  if not found or not crowds(found.index.t[S.var] * elem, R) then return nil end
  for _, l in ipairs(loads) do if l ~= found and l.buf == found.buf then return nil end end -- its only load
  return { load = found, width = B }
end

-- The loop that copies load l's rows for the t outputs from base of K's variable into panel P,
-- at P[at + t s + k] (output k, summed s).
local function tile_panel_copy(P, l, kvar, base, t, S, at)
  local body = {}
  for k = 0, t - 1 do
    body[k + 1] = { k = "store", target = { buf = P, index = aff.add(at, aff.add(aff.scale(aff.var(S.var), t), aff.const(k))) },
      expr = { k = "load", buf = l.buf, index = aff.subst(l.index, kvar, aff.add(base, aff.const(k))) } }
  end
  return { k = "loop", var = S.var, n = S.n, body = body }
end

-- pack's panels for all K.n / T tiles (tile v's at T S.n v) and the nests that copy them.
local function whole_panels(F, pack, K, S, T)
  local whole, before = {}, {}
  for i, l in ipairs(pack) do
    local P = { cname = "ws", role = "ws", size = K.n * S.n, id = #F.bufs, name = "panel" }
    F.bufs[#F.bufs + 1] = P
    whole[i] = P
    local tile = aff.scale(aff.var(K.var), T)
    before[i] = { k = "loop", var = K.var, n = K.n // T, body = { tile_panel_copy(P, l, K.var, tile, T, S, aff.scale(tile, S.n)) } }
  end
  return whole, before
end

-- st with I's variable as B ib + I (B = col.width), the panel for accum_tile, and the loop that
-- copies a block into it (R of S's iterations; from the chunk's with C).
local function column_blocks(F, st, col, I, S, C, R)
  local B, ib = col.width, I.var .. "b"
  local form = aff.add(aff.scale(aff.var(ib), B), aff.var(I.var))
  local P = { cname = "ws", role = "ws", size = R * B, id = #F.bufs, name = "panel" }
  F.bufs[#F.bufs + 1] = P
  local from = aff.subst(col.load.index, I.var, form)
  if C then from = aff.subst(from, S.var, aff.add(aff.scale(aff.var(S.var .. "c"), C), aff.var(S.var))) end
  local copy = { k = "loop", var = S.var, n = R, body = { { k = "loop", var = I.var, n = B, body = {
    { k = "store", target = { buf = P, index = aff.add(aff.scale(aff.var(S.var), B), aff.var(I.var)) },
      expr = { k = "load", buf = col.load.buf, index = from } } } } } }
  return copy_stmt(st, I.var, form, {}),
    { buf = P, src = col.load.buf, var = I.var, width = B }, copy
end

-- The statements of one tile of t outputs, K's variable replaced by base + k. zero: the target
-- holds zeros (so the locals start from 0). C: the summed loop runs C iterations from
-- C * <its variable>c (the chunk loop around the tiles). pack: loads to copy into panels first
-- (packed_loads; not with C). panel: { buf, src, var, width }: loads of src read panel
-- buf[width s + var] (column_panel). whole: pack's panels for all tiles, copied before them
-- (the tile's at t S.n times its first output). halves: the innermost kept loop (the one the
-- compiler vectorizes) runs half its length, each output's local twice, for i and i + n/2: 16
-- vectors of sums share 2 loads of the vectorized operand and 8 of the tile's values instead of
-- 8 sharing 1 and 8 (the KG_WIDE form: seq_ffn 64x768x3072's dW2, dx and dW1 nests 0.84-0.87x
-- the time with AVX-512, 1.2-1.5x with AVX2, whose 16 registers then spill; 8x64x256's
-- backward, summing 8 rows, 1.1x with AVX-512: hence WIDE_MIN_SUM). The same sums, in order.
-- lanes (L, with halves): that loop runs L columns at a time, each local an array of L (t[l])
-- and a loop over l inside each statement (lane_loop): a short innermost loop every C compiler
-- vectorizes, where the scalar form needs gcc's outer-loop vectorization (clang 14 leaves it
-- scalar: seq_ffn 64x768x3072's vjp_saved 86-128 ms against gcc's 8; in lanes 8.6-13, gcc the
-- same either way). Not in the narrow form: gcc with AVX2 ran lanes of 8 or 16 1.7-2.1x slower.
local function accum_tile(F, kept, summed, st, kvar, base, t, zero, C, pack, panel, whole, halves, lanes)
  local S = summed[1]
  local I, cols = kept[#kept], { 0 }
  kept = { table.unpack(kept) }
  if halves then
    kept[#kept] = { var = I.var, n = I.n // 2 }
    cols = { 0, I.n // 2 }
  end
  local lane_var, at_lane = I.var .. "l", nil -- I = L * Iv + l
  if lanes then
    at_lane = aff.add(aff.scale(aff.var(I.var .. "v"), lanes), aff.var(lane_var))
    kept[#kept] = { var = I.var .. "v", n = kept[#kept].n // lanes }
  end
  local function lane_loop(body) return lanes and { { k = "loop", var = lane_var, n = lanes, body = body } } or body end
  local panels, copies = whole or {}, {}
  local at_tile = whole and aff.scale(base, S.n) or aff.const(0)
  if not whole then
    for i, l in ipairs(pack) do
      local P = { cname = "ws", role = "ws", size = t * S.n, id = #F.bufs, name = "panel" }
      F.bufs[#F.bufs + 1] = P
      panels[i] = P
      copies[i] = tile_panel_copy(P, l, kvar, base, t, S, at_tile)
    end
  end
  local inits, sums, stores = {}, {}, {}
  for k = 0, t - 1 do
    local form = aff.add(base, aff.const(k))
    local target = ref_subst(st.target, kvar, form)
    local expr = subst_expr(st.expr, kvar, form)
    if #pack > 0 then
      local at = {}
      for i, l in ipairs(pack) do at[i] = aff.subst(l.index, kvar, form) end
      expr = loops.map_expr(expr, function(ix) return ix end, function(ld)
        for i, l in ipairs(pack) do
          if ld.buf == l.buf and same_index(ld.index, at[i]) then
            return { k = "load", buf = panels[i], index = aff.add(at_tile, aff.add(aff.scale(aff.var(S.var), t), aff.const(k))) }
          end
        end
        return ld
      end)
    end
    if C then expr = subst_expr(expr, S.var, aff.add(aff.scale(aff.var(S.var .. "c"), C), aff.var(S.var))) end
    if panel then
      expr = loops.map_expr(expr, function(ix) return ix end, function(ld)
        if ld.buf ~= panel.src then return ld end
        return { k = "load", buf = panel.buf, index = aff.add(aff.scale(aff.var(S.var), panel.width), aff.var(panel.var)) }
      end)
    end
    for _, h in ipairs(cols) do
      local to, e = target, expr
      if h > 0 then
        local form_h = aff.add(aff.var(I.var), aff.const(h))
        to, e = ref_subst(target, I.var, form_h), subst_expr(expr, I.var, form_h)
      end
      if lanes then to, e = ref_subst(to, I.var, at_lane), subst_expr(e, I.var, at_lane) end
      local acc = new_local(F, lanes, lanes and lane_var)
      inits[#inits + 1] = { k = "store", target = acc,
        expr = zero and { k = "num", v = 0 } or { k = "load", buf = to.buf, index = to.index } }
      sums[#sums + 1] = { k = "accum", target = acc, expr = e, combine = st.combine }
      stores[#stores + 1] = { k = "store", target = to, expr = { k = "load", buf = acc.buf, index = acc.index } }
    end
  end
  local inner = lane_loop(sums)
  for i = #summed, 1, -1 do inner = { { k = "loop", var = summed[i].var, n = C or summed[i].n, body = inner } } end
  local body = {}
  for _, s in ipairs(lane_loop(inits)) do body[#body + 1] = s end
  for _, s in ipairs(inner) do body[#body + 1] = s end
  for _, s in ipairs(lane_loop(stores)) do body[#body + 1] = s end
  for i = #kept, 1, -1 do body = { { k = "loop", var = kept[i].var, n = kept[i].n, body = body } } end
  for i = #copies, 1, -1 do table.insert(body, 1, copies[i]) end
  return body
end

-- Do the loops kept by index (all of its variables) visit every element of a buffer of size
-- elements once, in row-major order?
local function covers(index, kept, size)
  if index.c ~= 0 then return false end
  local nvars = 0
  for _ in pairs(index.t) do nvars = nvars + 1 end
  if nvars ~= #kept then return false end
  local stride = 1
  for i = #kept, 1, -1 do
    if index.t[kept[i].var] ~= stride then return false end
    stride = stride * kept[i].n
  end
  return stride == size
end

-- zeroed(buf): the buffer is all zeros, stored by an earlier nest that block.run drops when
-- this nest writes every element (then the buffer is returned second).
-- form: nil, "wide" (the KG_WIDE form: accum_tile's halves, in lanes) or "lanes" (the
-- KG_TILE_LANES form: accum_tile's lanes alone); the third and fourth values say whether
-- there is a wide and a lanes form.
block.WIDE_BYTES = 64    -- a vector register of KG_WIDE
block.WIDE_MIN_SUM = 64  -- summed iterations from which a tile has a wide form
local function block_accum(F, top, zeroed, elem, simd, form)
  local chain, st = perfect(top)
  if not chain or st.k ~= "accum" or #chain < 3 then return nil end
  local inner = chain[#chain]
  if inner.var and st.target.index.t[inner.var] ~= 1 then return nil end -- vectorize across a contiguous axis
  local kept, summed, K = {}, {}, nil
  for i, l in ipairs(chain) do
    if st.target.index.t[l.var] then
      if i < #chain then K = l end -- the kept loop nearest the inside, besides the innermost
      kept[#kept + 1] = l
    else
      summed[#summed + 1] = l
    end
  end
  if not K or #summed == 0 or not shares(st.expr, K.var) then return nil end
  local work = 1
  for _, l in ipairs(chain) do work = work * l.n end
  if work < block.MIN_WORK then return nil end
  local others = {}
  for _, l in ipairs(kept) do if l ~= K then others[#others + 1] = { var = l.var, n = l.n } end end
  local zero = (st.combine or "add") == "add" and covers(st.target.index, kept, st.target.buf.size)
    and not read_elsewhere({ st }, st.target.buf) and zeroed(st.target.buf)
  local S = summed[1]
  local C = not zero and #summed == 1 and S.n > 4 * block.ACCUM_CHUNK and S.n % block.ACCUM_CHUNK == 0
    and block.ACCUM_CHUNK
  local pack = simd and not C and #summed == 1 and packed_loads(st, K, S, elem) or {}
  local I = #others == 1 and others[1].var == inner.var and inner
  local R = C or (#summed == 1 and S.n)
  local col = simd and I and R and column_panel(st, K, S, I, R, elem)
  local T = math.min(block.TILE, K.n)
  local whole, before, panel, copy = nil, {}, nil, nil
  if col and #pack > 0 then -- the tiles' own panels then once for all tiles, when they stay in L2
    if K.n % T ~= 0 or K.n * S.n * elem > block.PANEL_ALL_BYTES then
      col = nil
    else
      whole, before = whole_panels(F, pack, K, S, T)
    end
  end
  if col then
    st, panel, copy = column_blocks(F, st, col, I, S, C, R)
    others = { { var = I.var, n = col.width } }
  end
  local lanes = block.WIDE_BYTES // elem -- a vector of the wide form, its lane loops' width
  local halves = simd and others[#others].n % (2 * lanes) == 0 and (R or 0) >= block.WIDE_MIN_SUM
  local laned = simd and others[#others].n % lanes == 0
  local wide = form == "wide" and halves
  local tiles = split_by(K, T, function(base, t)
    return accum_tile(F, others, summed, st, K.var, base, t, zero, C, pack, panel, whole, wide,
      (wide or form == "lanes" and laned) and lanes)
  end)
  if col then
    table.insert(tiles, 1, copy)
    tiles = { { k = "loop", var = I.var .. "b", n = I.n // col.width, body = tiles } }
  end
  for i = #before, 1, -1 do table.insert(tiles, 1, before[i]) end
  if C then tiles = { { k = "loop", var = S.var .. "c", n = S.n // C, body = tiles } } end
  return tiles, zero and st.target.buf, halves, laned
end

---------------------------------------------------------------------------------------------
-- Reduces: the kept loop around a reduce, unrolled by JAM and jammed

-- How many copies to jam: JAM, fewer where the jammed copies' rows of one buffer would crowd
-- one set of the L1 cache (above: seq_ffn's hidden rows at dff = 1024 or 3072, 4 or 12 KB
-- apart; with 8 jammed rows, and the shared operand's, they evict each other). The strides are
-- known here (every dimension is): per buffer read at var, at most ALIAS_WAYS copies may share
-- a set. Measured on a model of seq_ffn 64x768x3072's second products (rows 12 KB apart): one
-- product per term, 8 rows 5.2 ms, 4 rows 4.5; the JVP's two (w_tan h + w th), 8 rows 24.7 ms,
-- 4 rows 14.4. (Such longer sums were jammed only for operands beyond the caches before: at
-- 64x256x1024, rows 4 KB apart, jamming them had made the JVP 1.7x slower; with this, 1.4x
-- faster.)

-- (Accumulation tiles keep their rows in registers across the summed loop: 4 outputs instead
-- of 8 there made seq_ffn 64x768x3072's backward 1.6x slower.)
local function jam_count(e, var, n, elem)
  local strides = {} -- buffer -> byte strides at var of its loads
  for _, l in ipairs(loops.loads(e, {})) do
    local k = l.index.t[var]
    if k then
      strides[l.buf] = strides[l.buf] or {}
      strides[l.buf][k * elem] = true
    end
  end
  local J = math.min(block.JAM, n)
  local function crowded(j)
    for _, set in pairs(strides) do
      for stride in pairs(set) do if crowds(stride, j) then return true end end
    end
    return false
  end
  while J > block.ALIAS_WAYS and crowded(J) do J = J // 2 end
  return J
end

-- Reduce r for var = form, into target. crowded: fewer jammed than JAM, their rows crowding L1.
local function jam_copy(r, target, var, form, jammed, crowded)
  return { k = "reduce", target = target, rvars = r.rvars, lanes = r.lanes, expr = subst_expr(r.expr, var, form),
    check = r.check, node = r.node, combine = r.combine, product = r.product, jammed = jammed, crowded = crowded }
end

local function jam_reduce(top, elem)
  local chain, st = perfect(top)
  if not chain or st.k ~= "reduce" or #chain < 2 then return nil end
  local K = chain[#chain - 1] -- jam the loop outside the innermost kept one (rows around outputs)
  if not shares(st.expr, K.var) or K.n < 2 then return nil end
  local inner_loops = {}
  for i = #chain - 1 + 1, #chain do inner_loops[#inner_loops + 1] = chain[i] end
  local work = 1
  for _, r in ipairs(st.rvars) do work = work * r.n end
  for _, l in ipairs(chain) do work = work * l.n end
  if work < block.MIN_WORK then return nil end
  local J = jam_count(st.expr, K.var, K.n, elem)
  local body = split_by(K, J, function(base, t)
    local stmts = {}
    for k = 0, t - 1 do
      local form = aff.add(base, aff.const(k))
      stmts[#stmts + 1] = jam_copy(st, ref_subst(st.target, K.var, form), K.var, form, t > 1,
        J < math.min(block.JAM, K.n) or nil)
    end
    for i = #inner_loops, 1, -1 do stmts = { { k = "loop", var = inner_loops[i].var, n = inner_loops[i].n, body = stmts } } end
    return stmts
  end)
  -- the loops outside K stay as they were
  for i = #chain - 2, 1, -1 do body = { { k = "loop", var = chain[i].var, n = chain[i].n, body = body } } end
  return body
end

-- Output tiles: a block of jammed rows reads the operand all rows share (w of y = x w^T, 9.4 MB
-- at 64x768x3072) once, from memory, and the next block again. With the outputs in tiles, each
-- tile's rows of w small enough for L2 and the row blocks inside the tile loop, w streams once:
--   for K' < R/JAM: for o < n: [JAM reduces]   becomes   for ot: for K' < R/JAM: for o < T: [...]
-- Every output's sum is untouched (only the order of independent outputs changes).
block.TILE_BYTES = 1 << 18 -- the shared operands' rows of one output tile

local function tile_outputs(Kp, elem)
  local O = #Kp.body == 1 and Kp.body[1]
  if not O or O.k ~= "loop" or Kp.n < 2 or not O.body[1] or O.body[1].k ~= "reduce" then return nil end
  local first, terms, per, seen = O.body[1], 1, 0, {}
  for _, r in ipairs(first.rvars) do terms = terms * r.n end
  for _, l in ipairs(loops.loads(first.expr, {})) do
    if not l.index.t[Kp.var] and l.index.t[O.var] and not seen[l.buf] then
      seen[l.buf] = true
      per = per + terms * elem
    end
  end
  local T = per > 0 and block.TILE_BYTES // per
  if not T or T < 1 or T * 2 > O.n then return nil end
  return split_by({ var = O.var .. "t", n = O.n, node = O.node }, T, function(base, t)
    local body = {}
    for i, r in ipairs(O.body) do body[i] = copy_stmt(r, O.var, aff.add(base, aff.var(O.var)), {}) end
    return { { k = "loop", var = Kp.var, n = Kp.n, node = Kp.node,
      body = { { k = "loop", var = O.var, n = t, node = O.node, body = body } } } }
  end)
end

-- Inside an imperfect nest (a row loop around a product, its activation and the next product:
-- seq_ffn's forward), an output loop whose body is a reduce, or a reduce into a local and the
-- statements that use it (y[o] = x[o] + (t + b[o])), is jammed JAM outputs at a time: the
-- reduces share the row's loads in one lane loop, and their chains run side by side instead
-- of one latency-bound chain per output. Each jammed copy gets its own local.
local function keep(index) return index end
local function replace_buf(e, old, new)
  return loops.map_expr(e, keep, function(l) return l.buf == old and new or l end)
end


local function jam_outputs(F, K, outside, elem)
  local r = K.body[1]
  if not r or r.k ~= "reduce" or K.n < 2 or not shares(r.expr, K.var) then return nil end
  local work = K.n
  for _, rv in ipairs(r.rvars) do work = work * rv.n end
  if work < block.MIN_WORK then return nil end
  local into_local = r.target.buf.role == "local" and r.target.buf.size == 1
  if into_local then
    for i = 2, #K.body do
      local s = K.body[i]
      if s.k ~= "store" or not s.target.index.t[K.var] or s.target.buf == r.target.buf then return nil end
    end
    if read_elsewhere(outside, r.target.buf, K) then return nil end
  elseif #K.body ~= 1 or not r.target.index.t[K.var] then
    return nil
  end
  return split_by(K, jam_count(r.expr, K.var, K.n, elem), function(base, t)
    local reduces, rest = {}, {}
    for k = 0, t - 1 do
      local form = aff.add(base, aff.const(k))
      local target = into_local and new_local(F) or ref_subst(r.target, K.var, form)
      reduces[#reduces + 1] = jam_copy(r, target, K.var, form, t > 1)
      for i = 2, #K.body do
        local s = K.body[i]
        local load = { k = "load", buf = target.buf, index = target.index }
        rest[#rest + 1] = { k = "store", target = ref_subst(s.target, K.var, form), check = s.check, node = s.node,
          expr = replace_buf(subst_expr(s.expr, K.var, form), r.target.buf, load) }
      end
    end
    for _, s in ipairs(rest) do reduces[#reduces + 1] = s end
    return reduces
  end)
end

-- Replaces, under body, each loop for which rewrite gives a list of statements by that list
-- (not looking inside it); looks inside the others.
local function rewrite_loops(body, rewrite)
  local i = 1
  while i <= #body do
    local s = body[i]
    local repl = s.k == "loop" and rewrite(s)
    if repl then
      table.remove(body, i)
      for k = #repl, 1, -1 do table.insert(body, i, repl[k]) end
      i = i + #repl
    else
      if s.k == "loop" then rewrite_loops(s.body, rewrite) end
      i = i + 1
    end
  end
end

-- Chunks: jammed reduces whose shared rows outgrow the L1 cache (seq_ffn 64x768x3072's second
-- product: 8 activation rows of 12 KB, reread for every output from L2) are summed a chunk of
-- the row at a time, each output's lanes carried in a workspace buffer between chunks:
--   for o < n: t_k[o] = sum[r < R; lanes L] e_k(o, r)          (k < t, the jammed rows)
-- becomes
--   for o < n: P[(o t + k) L + l] = lanes of sum[r < C] e_k(o, r)             (from 0)
--   for c < R/C - 1: for o < n: P[(o t + k) L + l] += lanes of sum[r < C] e_k(o, C (c+1) + r)
--   for o < n: t_k[o] = tree(P[(o t + k) L + 0 .. L-1])
-- C is a multiple of L, so lane l still adds the terms r = l (mod L) in order, and the tree is
-- the reduce's: the same bits. Only for rows beyond L1 (at 32 KB, 2 chunks were 10% slower:
-- seq_ffn 64x256x1024 forward) and while P stays within L2.
-- Where every term is one product fused into its lane (fma on), the output loop is jammed too,
-- CARRY_ACCS / t outputs at a time (t jammed rows): with rows crowding L1 (t = 4), four chains
-- of fmas each wait 4 cycles a step, and each load of w serves 4 of them; 4 rows x 4 outputs
-- share 8 loads among 16 chains (seq_ffn 64x768x3072's second product, in a model: 3.0 -> 2.3
-- ms; with AVX2, 7.1 -> 5.0). Their lanes go through P, so the jam holds no tree (in registers,
-- 16 trees made gcc's 8x1-jammed first product 20% slower). Crowded rows within L1 take this
-- form too (one chunk) in a nest of their own for 32 registers of 512 bits (AVX-512, guard
-- KG_WIDE): seq_ffn 64x256x1024's forward ran in 0.86-0.95x the time there but 1.2x with AVX2,
-- where 16 accumulators of 16 floats need 32 of the 16 ymm registers (NEON's 32 registers of 4
-- floats are no better off); elsewhere the nest as before runs (guard !KG_WIDE).
block.CHUNK_BYTES = 16384     -- the jammed rows' slice of one chunk (half of a 32 KB L1)
block.CHUNK_FROM = 32768      -- the jammed rows' bytes above which they are chunked
block.CARRY_MAX_BYTES = 1 << 19 -- the carried lanes of one chunked loop
block.CARRY_ACCS = 16         -- the reduces in one lane loop of a chunk (rows x outputs)

-- Returns the statements (nil: O stays), and whether O has a KG_WIDE form (made if wide).
local function chunk_reduces(F, O, elem, fma, wide)
  local first = O.body[1]
  if not first or first.k ~= "reduce" or #first.rvars ~= 1 then return nil end
  local R, L, t = first.rvars[1], first.lanes, #O.body
  local fused = fma -- every term one product, fused into its lane: a chain of fma latencies
  for _, r in ipairs(O.body) do
    if r.k ~= "reduce" or not r.jammed or r.check or (r.combine or "add") ~= "add" or r.lanes ~= L or #r.rvars ~= 1
      or r.rvars[1].var ~= R.var or r.rvars[1].n ~= R.n then
      return nil
    end
    fused = fused and r.product and r.expr.k == "op" and r.expr.op == "mul"
  end
  -- without such chains (fma off: a multiply, then an add of 2-3 cycles; a tangent's two
  -- products) 4 rows already keep the adders busy: the jam only added registers (seq_ffn
  -- 64x256x1024 forward 1.3x slower with fma off, its JVP 1.2x with fma on)
  local U = fused and math.max(1, block.CARRY_ACCS // t) or 1
  local C = (block.CHUNK_BYTES // (t * elem)) // L * L
  local size = O.n * t * L
  local fits = C >= L and size * elem <= block.CARRY_MAX_BYTES
  local long = t * R.n * elem > block.CHUNK_FROM
  local widens = fits and not long and first.crowded and U > 1
  if not (fits and (long or wide and widens)) then return nil, widens end
  if widens then C = R.n end
  local P = { cname = "ws", role = "ws", size = size, id = #F.bufs, name = "lanes" }
  F.bufs[#F.bufs + 1] = P
  local c = R.var .. "c" -- a fresh name
  -- the reduces over r in [start, start + n), u outputs at a time, their lanes stored to P and,
  -- except in the first slice (lanes from 0: P needs no clearing), loaded from P first
  local function slice(start, n, first)
    return split_by(O, U, function(base, u)
      local body = {}
      for j = 0, u - 1 do
        local o = aff.add(base, aff.const(j))
        for k, r in ipairs(O.body) do
          local idx = aff.add(aff.scale(o, t * L), aff.const((k - 1) * L))
          local expr = subst_expr(subst_expr(r.expr, R.var, aff.add(start, aff.var(R.var))), O.var, o)
          body[#body + 1] = { k = "reduce", target = { buf = P, index = idx }, rvars = { { var = R.var, n = n } },
            lanes = L, expr = expr, node = r.node, combine = "add", product = r.product, jammed = true,
            lanes_in = not first, lanes_out = true }
        end
      end
      return body
    end)
  end
  local nc, rest = R.n // C, R.n % C
  local out = slice(aff.const(0), C, true)
  if nc > 1 then
    out[#out + 1] = { k = "loop", var = c, n = nc - 1, node = O.node,
      body = slice(aff.add(aff.scale(aff.var(c), C), aff.const(C)), C, false) }
  end
  if rest > 0 then for _, s in ipairs(slice(aff.const(nc * C), rest, false)) do out[#out + 1] = s end end
  local folds = {}
  for k, r in ipairs(O.body) do
    local terms = {}
    for l = 0, L - 1 do
      terms[l + 1] = { k = "load", buf = P, index = aff.add(aff.scale(aff.var(O.var), t * L), aff.const((k - 1) * L + l)) }
    end
    folds[k] = { k = "store", target = r.target, expr = { k = "tree", terms = terms, combine = "add" }, node = r.node }
  end
  out[#out + 1] = { k = "loop", var = O.var, n = O.n, node = O.node, body = folds }
  return out, widens
end

-- A nest of reduces jammed (jam_reduce), tiled and chunked, in its KG_WIDE form if wide; and
-- whether it has one.
local function reduce_blocks(F, top, elem, fma, wide)
  local repl, widens = jam_reduce(top, elem), false
  if not repl then return nil end
  rewrite_loops(repl, function(Kp) return tile_outputs(Kp, elem) end)
  rewrite_loops(repl, function(O)
    local out, w = chunk_reduces(F, O, elem, fma, wide)
    widens = widens or w
    return out
  end)
  return repl, widens
end

---------------------------------------------------------------------------------------------
-- Rows side by side. A row loop whose body sums along the row (LayerNorm's mean and variance,
-- BatchNorm's channel sums) runs each sum as one chain of dependent additions, a vector of
-- lanes wide: 48 steps for a row of 768 floats, each waiting for the last (3-4 cycles), at a
-- fraction of the adders' throughput. The rows are independent, so ROWS_JAM of them go through
-- the body together, each statement once per row in turn; their sums are consecutive reduces
-- over the same loop, which emit_c runs in one lane loop, the chains side by side:
--   for r < R: S1(r); S2(r)...   becomes   for r' < R/J: S1(J r'); ... S1(J r' + J-1); S2(J r')...
-- A buffer each row uses for itself (a local, a row of workspace not indexed by r) gets a copy
-- per row; a buffer accumulated across rows (dgamma) by one statement receives the rows' terms
-- in the same order. No sum changes its terms or their order: the same bits. The row nest's
-- code grows J times: only for chains of CHAIN_MIN steps per lane and more, or, with loops
-- kept as loops (unroll none: the cc tier's and the benchmark's text), for shorter rows whose
-- sums come in two sweeps or more, one waiting for the other, and which need no per-row copies
-- of workspace, only of locals (LayerNorm's variance waits for its mean, a lane tree, a square
-- root and a division: 8x64 forward 0.129 -> 0.093 us, JVP 0.236 -> 0.175, BatchNorm 4x8x8
-- 0.060 -> 0.044; with one sweep, RMSNorm 8x64 gained nothing, its JVP ran 15% slower; small
-- softmax VJPs would have held a row of workspace per row, for 14%; written out, in the tcc
-- text, they made LayerNorm 8x64 under tcc 1.4x slower and its generation 2x longer).
-- LayerNorm 64x768 forward: 9.5 -> 7.5 us.
block.ROWS_JAM = 4
block.CHAIN_MIN = 16
block.ROWS_L1_BYTES = 28672 -- what the jammed rows' body touches, at most (of a 32 KB L1)
block.ROWS_STREAM_MAX = 8 << 20 -- what the whole row loop touches, at most: from 16 MB of rows
-- (RMSNorm 2048x1024 and 4096x1024 forward, x and y) the jammed rows ran 1.2-2x slower

-- The buffers a row of K's body uses for itself (renamed per row), or nil when the rows are
-- not independent. outside: the function's body (who else reads a buffer).
local function row_scratch(K, outside)
  local by = {} -- buffer -> its accesses in the body, in statement order
  local order = {}
  for _, a in ipairs(loops.accesses(K.body)) do
    if not by[a.buf] then by[a.buf] = {}; order[#order + 1] = a.buf end
    local l = by[a.buf]
    l[#l + 1] = a
  end
  local scratch = {}
  for _, buf in ipairs(order) do
    local list, writers, coef, indep = by[buf], {}, nil, true
    for _, a in ipairs(list) do
      if a.write then writers[a.stmt] = true end
      local k = a.index.t[K.var]
      if k then indep = false end
      if coef == nil then coef = k or false elseif coef ~= (k or false) then coef = "mixed" end
    end
    if next(writers) then
      if coef == "mixed" then return nil end
      if not indep then -- written a row per iteration: every access within its own row
        for _, a in ipairs(list) do if not loops.slab(a.index, K.var, a.ranges) then return nil end end
      else
        local first = list[1]
        local nwriters = 0
        for _ in pairs(writers) do nwriters = nwriters + 1 end
        local rewritten = first.write and first.stmt.k ~= "accum" and not first.stmt.lanes_out
        for _, l in ipairs(loops.loads(first.stmt.expr, {})) do if l.buf == buf then rewritten = false end end
        if rewritten and buf.role ~= "param" and not read_elsewhere(outside, buf, K) then
          scratch[#scratch + 1] = buf -- written first by each row: a copy per row
        elseif nwriters == 1 and first.stmt.k == "accum" then
          for _, a in ipairs(list) do if a.stmt ~= first.stmt then return nil end end -- summed across rows
        else
          return nil
        end
      end
    end
  end
  return scratch
end

-- The bytes K's body touches with J rows side by side: each buffer indexed by K's variable a
-- row per copy, each copied scratch buffer per copy, the others (gamma, dgamma) once; with
-- read_only, only the buffers the body reads (what must stay in L1 from sweep to sweep).
local function jam_bytes(K, scratch, J, elem, read_only)
  local per, copied, read = {}, {}, {}
  for _, b in ipairs(scratch) do copied[b] = true end
  local accesses = loops.accesses(K.body)
  for _, a in ipairs(accesses) do if not a.write then read[a.buf] = true end end
  for _, a in ipairs(accesses) do
    if read_only and not read[a.buf] then goto next_access end
    local k = a.index.t[K.var]
    local b = k and J * math.abs(k) * elem or (copied[a.buf] and J or 1) * a.buf.size * elem
    per[a.buf] = math.max(per[a.buf] or 0, b)
    ::next_access::
  end
  local sum = 0
  for _, b in pairs(per) do sum = sum + b end
  return sum
end

-- Do the rows' copies of loop s (of K's body) run as one loop, each iteration the rows'
-- statements in row order? When s accumulates into a buffer the rows share (dgamma), so that
-- it is loaded and stored once per J rows, and every element of it is touched by one
-- iteration (it then receives the rows' terms in the same order). LayerNorm 64x768
-- vjp_saved 11.1 -> 10.1 us, RMSNorm 11.2 -> 9.2. (Loops of stores alone stay apart: in one
-- loop, LayerNorm 64x768 forward and BatchNorm c64 backward ran 3-7% faster, RMSNorm 64x768
-- JVP 4% slower.)
local function rows_in_one_loop(K, s)
  if s.k ~= "loop" or s.lanes then return false end
  local shared = {}
  for _, t in ipairs(s.body) do
    if t.k ~= "store" and t.k ~= "accum" then return false end
    if not t.target.index.t[K.var] then shared[t.target.buf] = t.target.index end
  end
  if not next(shared) then return false end
  for _, a in ipairs(loops.accesses(s.body)) do
    local ix = shared[a.buf]
    if ix and not (aff.str(a.index) == aff.str(ix) and (ix.t[s.var] or 0) ~= 0) then return false end
  end
  return true
end

local function row_jam(F, K, outside, elem, short_rows)
  local long, run, widest, sweeps = false, 0, 1, 0 -- widest: the most sums already side by side
  for i, s in ipairs(K.body) do
    if s.k == "reduce" then
      if s.jammed or s.product or s.lanes_out then return nil end
      local steps = 1
      for _, r in ipairs(s.rvars) do steps = steps * r.n end
      if steps // s.lanes >= block.CHAIN_MIN then long = true end
      local prev = K.body[i - 1]
      if not (prev and prev.k == "reduce") then sweeps = sweeps + 1 end
      run = (prev and prev.k == "reduce" and loops.same_sum(prev, s)) and run + 1 or 1
      widest = math.max(widest, run)
    end
  end
  local scratch = (long or (short_rows and sweeps >= 2)) and jam_bytes(K, {}, K.n, elem) <= block.ROWS_STREAM_MAX
    and row_scratch(K, outside)
  if not scratch then return nil end
  if not long then for _, b in ipairs(scratch) do if b.role == "ws" then return nil end end end
  -- about ROWS_JAM chains at a time (BatchNorm's backward, when it summed 3 per channel before
  -- the factored sums, ran 10% slower with 4 channels of them, 12 accumulators, than with 1);
  -- J rows dividing the loop (a remainder would be more copies of the body), whose data stay
  -- in L1 from one sweep to the next (RMSNorm 64x768 JVP, 4 rows of x, x_tan and y_tan and
  -- gamma, gamma_tan: 42 KB, ran 1.2x slower than one row at a time)
  local J = block.ROWS_JAM // widest
  while J >= 2 and (K.n % J ~= 0 or jam_bytes(K, scratch, J, elem) > block.ROWS_L1_BYTES) do J = J - 1 end
  -- Rows whose sums each run alone (one chain at a time) still go two by two when what the
  -- body reads of two rows fits, its outputs streaming past: BatchNorm c128 56x56 forward
  -- (two channels of x, 25 KB, and of y) 69.2 -> 65.8 us, LayerNorm 64x768 f64 forward 18.9
  -- -> 16.4, RMSNorm 256x1024 vjp_saved 54.5 -> 52.9. (With two sums side by side already,
  -- RMSNorm 256x1024's JVP ran 10% slower so; four channels of BatchNorm, 50 KB of x, 5%.)
  if J < 2 and widest == 1 and K.n % 2 == 0 and jam_bytes(K, scratch, 2, elem, true) <= block.ROWS_L1_BYTES then
    J = 2
  end
  if J < 2 then return nil end
  return split_by(K, J, function(base, t)
    local renames = {}
    for k = 0, t - 1 do
      renames[k] = {}
      for _, b in ipairs(scratch) do
        if k > 0 then
          local c = { cname = b.cname, role = b.role, size = b.size, id = #F.bufs, name = b.name }
          F.bufs[#F.bufs + 1] = c
          renames[k][b] = c
        end
      end
    end
    local out = {}
    for _, s in ipairs(K.body) do
      local copies = {}
      for k = 0, t - 1 do copies[k + 1] = copy_stmt(s, K.var, aff.add(base, aff.const(k)), renames[k]) end
      if t > 1 and rows_in_one_loop(K, s) then
        local body = {}
        for _, c in ipairs(copies) do for _, x in ipairs(c.body) do body[#body + 1] = x end end
        copies = { copies[1] }
        copies[1].body = body
      end
      for _, c in ipairs(copies) do out[#out + 1] = c end
    end
    return out
  end)
end

---------------------------------------------------------------------------------------------
-- Coalescing: a loop whose body is one loop, where every index reads the two in row-major
-- order (coefficient of the outer = extent of the inner x coefficient of the inner), becomes
-- one loop: the same iterations in the same order, and a longer contiguous run to vectorize
-- (BatchNorm's h and w, GroupNorm's spatial axes).

local function coalescable(a, b)
  local ok = true
  local function check(idx)
    if (idx.t[a.var] or 0) ~= (idx.t[b.var] or 0) * b.n then ok = false end
  end
  loops.walk(b.body, function(s)
    if s.k == "loop" then return end
    check(s.target.index)
    for _, l in ipairs(loops.loads(s.expr, {})) do check(l.index) end
    if s.k == "reduce" then ok = false end -- its rvars stay as lower chose them
  end)
  return ok
end

local function merge_index(idx, a, b)
  if not idx.t[a.var] and not idx.t[b.var] then return idx end
  local r = { c = idx.c, t = {} }
  for v, k in pairs(idx.t) do if v ~= b.var then r.t[v] = k end end
  r.t[a.var] = idx.t[b.var] -- coef_b * (n_b * i_a + i_b): the merged loop keeps a's name
  return r
end

-- Broadcast expansion, so that more nests coalesce: in `for a: for b: ...` (b innermost, the
-- only statement of a), a read-only buffer loaded at an index of a's variable but not b's (a
-- GroupNorm group's mean read by each of its channels) blocks merging a and b into one flat
-- loop. When that load does not change across an enclosing loop L (the spatial positions), it is
-- copied once per L-iteration's parent into a workspace row e[n_a * n_b] (e[n_b*i + j] = the
-- value of group i) ahead of L, and the nest reads e[n_b*a + b] instead: row-major, the same
-- values, no arithmetic changed. Only for short inner loops (the cases that vectorize badly).
block.EXPAND_MAX_INNER = 8

local function written_in(body, buf)
  local w = false
  loops.walk(body, function(s) if s.k ~= "loop" and s.target.buf == buf then w = true end end)
  return w
end

local function expand_broadcasts(F, body, chain)
  for pos = #body, 1, -1 do
    local s = body[pos]
    if s.k == "loop" then
      chain[#chain + 1] = { loop = s, body = body }
      expand_broadcasts(F, s.body, chain)
      chain[#chain] = nil
    end
  end
  -- this level's body: is it a pair a (= chain[#chain]) -> b?
  local a = chain[#chain] and chain[#chain].loop
  if not a or #a.body ~= 1 or a.body[1].k ~= "loop" then return end
  local b = a.body[1]
  if b.n > block.EXPAND_MAX_INNER then return end
  local wide, ok = {}, true
  loops.walk(b.body, function(st)
    if st.k == "loop" then return end
    if st.k == "reduce" then ok = false end
    local function check(idx, l)
      local ka, kb = idx.t[a.var] or 0, idx.t[b.var] or 0
      if ka == kb * b.n then return end
      if l and kb == 0 then wide[#wide + 1] = l else ok = false end
    end
    check(st.target.index)
    for _, l in ipairs(loops.loads(st.expr, {})) do check(l.index, l) end
  end)
  if not ok or #wide == 0 then return end
  -- the outermost enclosing loop L within which every widened load is invariant (and unwritten)
  local depth = #chain
  local at = nil
  for d = depth - 1, 1, -1 do
    local L = chain[d].loop
    local invariant = true
    for _, l in ipairs(wide) do
      for v in pairs(l.index.t) do
        if v ~= a.var then
          for d2 = d, depth - 1 do if chain[d2].loop.var == v then invariant = false end end
        end
      end
      if written_in(L.body, l.buf) then invariant = false end
    end
    if not invariant then break end
    at = d
  end
  if not at then return end
  local L, parent = chain[at].loop, chain[at].body
  local e0, e1 = L.var, "i" .. (tonumber(util.match(L.var, "%d+")) + 1) -- canonical names (fuse)
  local copies, made = {}, {}
  for _, l in ipairs(wide) do
    made[l.buf] = made[l.buf] or {}
    local key = aff.render(l.index, 0, {})
    local e = made[l.buf][key]
    if not e then
      e = { cname = "ws", role = "ws", size = a.n * b.n, id = #F.bufs, name = l.buf.name and (l.buf.name .. "_wide") }
      F.bufs[#F.bufs + 1] = e
      made[l.buf][key] = e
      local src = { k = "load", buf = l.buf, index = aff.subst(l.index, a.var, aff.var(e0)) }
      copies[#copies + 1] = { k = "loop", var = e0, n = a.n, body = { { k = "loop", var = e1, n = b.n, body = {
        { k = "store", target = { buf = e, index = aff.add(aff.scale(aff.var(e0), b.n), aff.var(e1)) }, expr = src } } } } }
    end
    l.buf, l.index = e, aff.add(aff.scale(aff.var(a.var), b.n), aff.var(b.var))
  end
  for i = #parent, 1, -1 do
    if parent[i] == L then
      for k = #copies, 1, -1 do table.insert(parent, i, copies[k]) end
      break
    end
  end
end

---------------------------------------------------------------------------------------------
-- Reductions into their producer loop: a loop that stores a row (for v < n: b[v] = ...)
-- followed by a reduce over that row (t = sum[r < n; lanes L] f(b[r], ...)) becomes one sweep,
-- the reduce's lanes kept in a local array of L accumulators (no workspace):
--   for l < L: acc[l] = 0
--   for v < n/L: for l < L: b[L v + l] = ...; acc[l] += f(b[L v + l], ...)
--   t = tree(acc[0], ..., acc[L-1])
-- Lane l adds the terms j = l (mod L) in order from 0 and the same tree folds the lanes, so the
-- sum is the reduce's to the bit; the row is no longer read back (a VJP's sum of its own
-- gradient row: LayerNorm's and BatchNorm's dx; LayerNorm 64x768 vjp_saved 0.84 -> 0.75x
-- oneDNN, BatchNorm c64 32x32 1.53 -> 1.15x hand -Ofast). The lane loop is written out
-- (loop.lanes) and the accumulators are a C array, so gcc keeps them in one vector register.

-- The store to buf in body, when there is exactly one.
local function only_store(body, buf)
  local found
  for _, st in ipairs(body) do
    if st.target.buf == buf then
      if found then return nil end
      found = st
    end
  end
  return found
end

local function reduce_into_producer(F, a, r)
  local W = r.lanes
  if r.check or (r.combine or "add") ~= "add" or #r.rvars ~= 1 or r.rvars[1].n ~= a.n or not W or W < 2
    or a.n % W ~= 0 or a.n < block.LANE_FUSE_MIN * W then
    return nil
  end
  local written = {}
  for _, st in ipairs(a.body) do
    if st.k ~= "store" then return nil end
    written[st.target.buf] = true
  end
  if written[r.target.buf] then return nil end
  local rv = r.rvars[1].var
  for _, l in ipairs(loops.loads(r.expr, {})) do
    if written[l.buf] then -- only the element this iteration stored
      local st = only_store(a.body, l.buf)
      if not st or aff.str(aff.subst(st.target.index, a.var, aff.var(rv))) ~= aff.str(l.index) then return nil end
    end
  end
  local u = "i" .. (tonumber(util.match(a.var, "%d+")) + 1) -- canonical names (fuse)
  local form = aff.add(aff.scale(aff.var(a.var), W), aff.var(u))
  local acc = { cname = "t", role = "local", size = W, id = #F.bufs }
  F.bufs[#F.bufs + 1] = acc
  local inner = {}
  for _, st in ipairs(a.body) do
    inner[#inner + 1] = { k = "store", target = ref_subst(st.target, a.var, form), expr = subst_expr(st.expr, a.var, form),
      check = st.check, node = st.node }
  end
  inner[#inner + 1] = { k = "accum", target = { buf = acc, index = aff.var(u) }, expr = subst_expr(r.expr, rv, form),
    combine = "add", node = r.node }
  local lanes = {}
  for l = 0, W - 1 do lanes[#lanes + 1] = { k = "load", buf = acc, index = aff.const(l) } end
  return {
    { k = "loop", var = a.var, n = W, node = r.node, body = {
      { k = "store", target = { buf = acc, index = aff.var(a.var) }, expr = { k = "num", v = 0 }, node = r.node } } },
    { k = "loop", var = a.var, n = a.n // W, node = a.node, body = { { k = "loop", var = u, n = W, lanes = true, node = a.node, body = inner } } },
    { k = "store", target = r.target, expr = { k = "tree", terms = lanes, combine = "add" }, node = r.node },
  }
end

local function reduces_into_producers(F, body)
  for _, s in ipairs(body) do if s.k == "loop" then reduces_into_producers(F, s.body) end end
  local i = 1
  while i < #body do
    local a, r = body[i], body[i + 1]
    local repl = a.k == "loop" and r.k == "reduce" and reduce_into_producer(F, a, r)
    if repl then
      table.remove(body, i + 1)
      table.remove(body, i)
      for k = #repl, 1, -1 do table.insert(body, i, repl[k]) end
      i = i + #repl
    else
      i = i + 1
    end
  end
end

local function coalesce(body)
  for _, s in ipairs(body) do
    if s.k == "loop" then
      coalesce(s.body)
      while #s.body == 1 and s.body[1].k == "loop" and coalescable(s, s.body[1]) do
        local b = s.body[1]
        loops.walk(b.body, function(t)
          if t.k == "loop" then return end
          t.target = { buf = t.target.buf, index = merge_index(t.target.index, s, b) }
          local function fix(e)
            if e.k == "load" then e.index = merge_index(e.index, s, b)
            elseif e.k == "op" then for _, x in ipairs(e.args) do fix(x) end
            elseif e.k == "ifzero" then e.index = merge_index(e.index, s, b); fix(e.e)
            elseif e.k == "tree" then for _, x in ipairs(e.terms) do fix(x) end end
          end
          fix(t.expr)
        end)
        s.n = s.n * b.n
        s.body = b.body
      end
    end
  end
end

-- The buffer a nest `for v < size: buf[v] = 0` clears, or nil.
local function zero_store(top)
  local s = top.k == "loop" and #top.body == 1 and top.body[1]
  if not s or s.k ~= "store" or s.expr.k ~= "num" or s.expr.v ~= 0 or s.target.buf.size ~= top.n then return nil end
  local idx = s.target.index
  if idx.c ~= 0 or idx.t[top.var] ~= 1 or next(idx.t, top.var) ~= nil or next(idx.t) ~= top.var then return nil end
  return s.target.buf
end

-- elem: the bytes of one element (the cache-size decisions). target "scalar" (a core without
-- vector registers, Cortex-M): no jams and no rows side by side, whose accumulators (8 outputs
-- of 16 lanes) such a core keeps in memory: the firmware example's forward_train 369,300 ->
-- 149,200 instructions, 5,108 -> 3,420 bytes of code, with emit_c's trees written out.
-- unroll: the schedule's policy to come. Under "auto", the JIT's (tcc, which vectorizes
-- nothing and gets written-out code), nothing is jammed either: over the 32 JIT rows of the
-- benchmark the tcc kernels ran 1.01x the time with jams (0.90-1.16x by row), while seq_ffn
-- 8x64x256's generation took 20 ms instead of 36 and its compile 3.4 ms instead of 9.3 (ffn
-- 64x256 16 -> 11 ms, LayerNorm 64x768 17.5 -> 11.7). Short rows go side by side only under
-- "none" (above).
function block.run(F, elem, target, unroll, fma)
  local simd, short_rows = target ~= "scalar" and unroll ~= "auto", unroll == "none"
  expand_broadcasts(F, F.body, {})
  coalesce(F.body)
  reduces_into_producers(F, F.body)
  -- A gradient such as dW is cleared by one nest (for v < size: w_grad[v] = 0) and then filled
  -- by one accumulation nest: its tiles start from 0 instead, and the clearing goes (a write
  -- and a read of the whole matrix less: seq_ffn 64x768x3072 backward 10% faster).
  local out, cleared = {}, {} -- cleared[buf]: the position in out of the nest that zeroes it
  local function zeroed(buf) return cleared[buf] ~= nil end
  for _, top in ipairs(F.body) do
    local accum, zbuf, halves, laned = block_accum(F, top, zeroed, elem, simd)
    local repl, wide, lanes = accum, nil, nil
    if halves then wide = block_accum(F, top, zeroed, elem, simd, "wide") end
    if laned then lanes = block_accum(F, top, zeroed, elem, simd, "lanes") end
    if zbuf then out[cleared[zbuf]] = false end
    for _, x in ipairs(loops.accesses({ top })) do cleared[x.buf] = nil end
    if not accum and simd then
      local widens
      repl, widens = reduce_blocks(F, top, elem, fma, false)
      if widens then wide = reduce_blocks(F, top, elem, fma, true) end
    end
    if repl then
      -- the nest's forms, each under its preprocessor condition and not those before it (emit_c
      -- defines and calls each under #if guard): the first that holds runs
      local forms, earlier = {}, {}
      if wide then forms[#forms + 1] = { wide, "KG_WIDE" } end
      if lanes then forms[#forms + 1] = { lanes, "KG_TILE_LANES" } end
      forms[#forms + 1] = { repl }
      for _, f in ipairs(forms) do
        local conds = { table.unpack(earlier) }
        conds[#conds + 1] = f[2]
        loops.walk(f[1], function(s) s.node = s.node or top.node end)
        for _, s in ipairs(f[1]) do
          s.guard = #conds > 0 and table.concat(conds, " && ") or nil
          out[#out + 1] = s
        end
        if f[2] then earlier[#earlier + 1] = "!" .. f[2] end
      end
    else
      local rows = simd and top.k == "loop" and row_jam(F, top, F.body, elem, short_rows)
      if rows then
        for _, r in ipairs(rows) do out[#out + 1] = r end
      else
        if simd and top.k == "loop" then
          rewrite_loops(top.body, function(K) return jam_outputs(F, K, F.body, elem) or row_jam(F, K, F.body, elem, short_rows) end)
        end
        out[#out + 1] = top
        local buf = zero_store(top)
        if buf then cleared[buf] = #out end
      end
    end
  end
  F.body = {}
  for _, s in ipairs(out) do if s then F.body[#F.body + 1] = s end end
  return F
end

return block
