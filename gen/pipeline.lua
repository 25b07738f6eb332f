-- pipeline: the passes in order, and the entry points the C host calls.
--
--   spec (load, bind, forward graph)
--     -> vjp / jvp (derived or closed form)        graph IR (ir.lua)
--     -> simplify                                  graph IR
--     -> lower                                     loop IR (loops.lua): a nest per stored value
--     -> fuse                                      loop IR: fused sweeps, row-sized buffers
--     -> block                                     loop IR: register-blocked matrix products, workspace plan
--     -> schedule                                  unroll decisions
--     -> emit_c                                    C text (templates/)
--
-- With check_ir the IR checkers run after every pass; dump_ir = PASS returns the IR text after
-- that pass (forward, vjp, jvp, forward_train, vjp_saved, simplify: the graph; lower, fuse,
-- block: the loop IR).

local util = require("util")
local ops = require("ops")
local ir = require("ir")
local spec = require("spec")
local vjp = require("vjp")
local jvp = require("jvp")
local simplify = require("simplify")
local lower = require("lower")
local fuse = require("fuse")
local block = require("block")
local loops = require("loops")
local schedule = require("schedule")
local x86 = require("x86")
local roles = require("roles")
local optim = require("optim")
local emit = require("emit_c")
local template = require("template")
local host = require("kg_host")

local pipeline = {}

pipeline.VERSION = host.version
local INT_MAX = 2147483647

---------------------------------------------------------------------------------------------
-- Passes: the functions a kernel file holds, in order, each with its graph. A new pass is an
-- entry here (and a name in the C library's kg_pass list). graph(R) gets the forward graph F,
-- its builder, the spec and the request; it returns a graph in the IR, before simplify. cost:
-- its generation time relative to the others' (LayerNorm, FFN: forward 1, JVP about 2,
-- backward passes 4 to 4.5): passes in parallel start with the costliest (pipeline.plan).

local function derived_vjp(R)
  if R.req.vjp_form == "closed" then return vjp.closed(R.F, R.S, R.ctx, R.fb) end
  return vjp.derive(R.F)
end

-- The saved values worth an argument: computed (not an input or a constant), each node once.
local function saved_values(F)
  local list, seen = {}, {}
  for _, s in ipairs(F.saved) do
    if not seen[s.node] and s.node.op ~= "input" and s.node.op ~= "const" and s.node.op ~= "table" then
      seen[s.node] = true
      list[#list + 1] = s
    end
  end
  return list
end

-- The forward graph that also outputs every saved value (role "save").
local function forward_train(R)
  local G = R.F:clone()
  for _, o in ipairs(R.F.outputs) do G.outputs[#G.outputs + 1] = o end
  for _, s in ipairs(saved_values(R.F)) do G.outputs[#G.outputs + 1] = { name = s.name, role = "save", node = s.node } end
  return G
end

-- forward_train saves only what the request's backward passes (vjp_saved, train) read: with W2
-- frozen, a pre-norm block's train step reads no hidden activation, and saving it would cost a
-- fifth of the step's RAM. A request without them saves every value the spec declares (another
-- request's backward may read any). Works on simplified graphs, which keep no dead node.
local READERS = { "vjp_saved", "train" }
local function prune_saved(graphs, requested)
  local readers = {}
  for _, p in ipairs(READERS) do readers[#readers + 1] = graphs[p] end
  if not requested.forward_train or #readers == 0 then return end
  local read = {}
  for _, G in ipairs(readers) do
    local used = {}
    for _, n in ipairs(G.nodes) do for _, a in ipairs(n.args) do used[a] = true end end
    for _, o in ipairs(G.outputs) do used[o.node] = true end
    for _, io in ipairs(G.inputs) do if io.role == "saved" and used[io.node] then read[io.name] = true end end
  end
  local function kept(list)
    local out = {}
    for _, x in ipairs(list) do
      if (x.role ~= "save" and x.role ~= "saved") or read[x.name] then out[#out + 1] = x end
    end
    return out
  end
  local F = graphs.forward_train
  if F then
    F.outputs = kept(F.outputs)
    graphs.forward_train = simplify.run(F)
  end
  for _, p in ipairs(READERS) do
    if graphs[p] then graphs[p].inputs = kept(graphs[p].inputs) end
  end
end

-- The VJP with every saved value read from an argument (role "saved") instead of computed:
-- what only fed the saved values is dead, and simplify drops it. With trainable (a set of
-- input names), those inputs get the role "param" (the train pass updates them).
local function vjp_saved(R, trainable)
  local V = derived_vjp(R)
  local H, map = ir.new(), {}
  local function inputs(keep) for _, io in ipairs(V.inputs) do
    if keep(io.role) then
      local role = io.role == "input" and trainable and trainable[io.name] and "param" or io.role
      map[io.node] = H:input(io.name, io.node.shape, role)
    end
  end end
  inputs(function(role) return role == "input" end) -- argument order: inputs, saved, cotangents
  for _, s in ipairs(saved_values(R.F)) do map[s.node] = H:input(s.name, s.node.shape, "saved") end
  inputs(function(role) return role ~= "input" end)
  for _, n in ipairs(V.nodes) do
    if not map[n] then
      local args = {}
      for i, a in ipairs(n.args) do args[i] = map[a] end
      local m = H:make(n.op, args, n.attr)
      m.name = m.name or n.name
      map[n] = m
    end
  end
  for _, o in ipairs(V.outputs) do H.outputs[#H.outputs + 1] = { name = o.name, role = o.role, node = map[o.node] } end
  return H
end

-- Keeps only the gradients of the inputs named in R.wrt (all when the request names none).
local function selected_grads(G, R)
  if not R.wrt then return G end
  local outs = {}
  for _, o in ipairs(G.outputs) do if o.role ~= "grad" or R.wrt[o.name] then outs[#outs + 1] = o end end
  G.outputs = outs
  return G
end

-- The training step: vjp_saved, then the optimizer's update of every trainable parameter
-- (R.train) in place, from its gradient, as soon as that is complete; the gradients of the
-- inputs named in R.wrt are outputs too. Arguments: the inputs (trainable ones role "param",
-- read and updated), saved values, cotangents, `opt` (the hyperparameters, optim.lua), then
-- each trainable parameter's optimizer state (role "state", read and updated).
local function train(R)
  local V = vjp_saved(R, R.train)
  local O = optim.OPTIMIZERS[R.req.optimizer]
  local grad, param = {}, {}
  for _, o in ipairs(V.outputs) do if o.role == "grad" then grad[o.name] = o.node end end
  for _, io in ipairs(V.inputs) do if io.role == "param" then param[#param + 1] = io end end
  local opt = V:input("opt", { #O.hyper }, "hyper", O.hyper)
  local h = {}
  for i, name in ipairs(O.hyper) do h[name] = V:element(opt, i - 1) end
  local outs = {}
  for _, o in ipairs(V.outputs) do if o.role == "grad" and R.wrt and R.wrt[o.name] then outs[#outs + 1] = o end end
  for _, io in ipairs(param) do
    local s = {}
    for _, key in ipairs(O.state) do s[key] = V:input(io.name .. "_" .. key, io.node.shape, "state") end
    local p, new = O.update(V, io.node, grad[io.name], h, s)
    outs[#outs + 1] = { name = io.name, role = "param", node = p }
    for _, key in ipairs(O.state) do outs[#outs + 1] = { name = io.name .. "_" .. key, role = "state", node = new[key] } end
  end
  V.outputs = outs
  return V
end

pipeline.PASSES = {
  { name = "forward", doc = "forward pass", cost = 1, graph = function(R) return R.F end },
  { name = "vjp", doc = "reverse mode: gradients of every input from output cotangents", cost = 4,
    graph = function(R) return selected_grads(derived_vjp(R), R) end },
  { name = "jvp", doc = "forward mode: output tangents from input tangents", cost = 2, graph = function(R)
    if R.req.jvp_form == "closed" then return jvp.closed(R.F, R.S, R.ctx, R.fb) end
    return jvp.derive(R.F)
  end },
  { name = "forward_train", doc = "forward pass that also writes what vjp_saved reads (saved)", cost = 1,
    graph = forward_train },
  { name = "vjp_saved", doc = "reverse mode reading what forward_train saved: gradients of every input", cost = 4,
    graph = function(R) return selected_grads(vjp_saved(R), R) end },
  { name = "train", doc = "training step: vjp_saved, then the optimizer updates the trainable parameters in place",
    cost = 4, graph = train, needs_train = true },
}
local PASS = {}
for _, p in ipairs(pipeline.PASSES) do PASS[p.name] = p end

local function check_options(req)
  -- field, its command-line option, allowed values (the first is the default; nil: optional)
  local function one_of(field, option, values, default)
    local v = req[field]
    if v == nil then req[field] = default; return end
    for _, x in ipairs(values) do if x == v then return end end
    util.fail(option .. ": '" .. tostring(v) .. "' is not one of " .. table.concat(values, ", "))
  end
  one_of("dtype", "--dtype", { "f32", "f64" }, "f32")
  one_of("semantics", "--semantics", { "torchlean", "pytorch" }, "torchlean")
  one_of("unroll", "--unroll", { "auto", "full", "none" }, "auto")
  one_of("vjp_form", "--vjp", { "derived", "closed" }, "derived")
  one_of("jvp_form", "--jvp", { "derived", "closed" }, "derived")
  local dumpable = { "forward", "simplify", "lower", "fuse", "block" }
  for _, p in ipairs(pipeline.PASSES) do if p.name ~= "forward" then dumpable[#dumpable + 1] = p.name end end
  one_of("dump_ir", "--dump-ir", dumpable, nil)
  one_of("fuse", "--fuse", { "auto", "none" }, "auto")
  one_of("fma", "--fma", { "off", "on" }, "off")
  one_of("target", "--target", { "simd", "scalar" }, "simd")
  -- the passes to generate, in table order (default: all)
  local want = {}
  for _, q in ipairs(req.passes or {}) do
    if not PASS[q] then util.fail("--pass: '" .. tostring(q) .. "' is not a pass") end
    want[q] = true
  end
  if want.train and not req.train then util.fail("--pass train: name the trainable inputs with --train") end
  req.passes = {}
  for _, p in ipairs(pipeline.PASSES) do
    if want[p.name] or (not next(want) and (req.train or not p.needs_train)) then req.passes[#req.passes + 1] = p.name end
  end
  one_of("optimizer", "--optimizer", optim.NAMES, "sgd")
  if req.optimizer ~= "sgd" and not req.train then util.fail("--optimizer: only with --train") end
  if req.name and not util.is_name(req.name) then util.fail("--name: '" .. req.name .. "' is not a C identifier") end
  if req.name and util.match(req.name, "^kg_") then -- the runtime's and the helpers' prefix
    util.fail("--name: '" .. req.name .. "' begins with kg_, which generated code keeps for itself")
  end
end

---------------------------------------------------------------------------------------------
-- Baked inputs (kerngen --const NAME=FILE, kg_request.consts: a list of { name = NAME, values =
-- { number... } }, the input's elements in row-major order). Each becomes a leaf of op "table"
-- in the forward graph, so every pass derived from it reads that input as a constant: it is no
-- argument, gets no gradient and takes no tangent; emit_c defines it once per file as
-- `static const T <name>_<input>[N]`. Checked here: an input of the graph, given once, its
-- element count, finite values, a C name no function of the file has. Returns the leaf maker
-- for spec.forward_graph (nil without baked inputs) and the baked names in input order.
local function baked_inputs(S, ctx, consts)
  if not consts or #consts == 0 then return nil, {} end
  local shapes, names = {}, {}
  for _, i in ipairs(spec.active_inputs(S, ctx.attrs)) do
    shapes[i[1]] = spec.input_shape(i, ctx.dims)
    names[#names + 1] = i[1]
  end
  local values = {}
  for _, c in ipairs(consts) do
    local name, where = c.name, "--const " .. tostring(c.name)
    if not shapes[name] then
      util.fail(where .. ": " .. S.name .. " has no input of that name (inputs: " .. table.concat(names, ", ") .. ")")
    end
    if values[name] then util.fail(where .. ": given twice") end
    for _, p in ipairs(pipeline.PASSES) do
      if name == p.name or util.match(name, "^" .. p.name .. "_%d+$") then
        util.fail(where .. ": its table would have the C name of a function (" .. p.name .. "...)")
      end
    end
    local count, v = util.count(shapes[name]), c.values
    if #v ~= count then
      util.fail(util.format("%s: %d values, but the input has shape %s (%d elements)", where, #v, util.shape_str(shapes[name]), count))
    end
    for k = 1, count do
      local x = v[k]
      if x ~= x or x == math.huge or x == -math.huge then
        util.fail(util.format("%s: element %d is %s; a table holds finite values", where, k - 1,
          x ~= x and "NaN" or (x > 0 and "inf" or "-inf")))
      end
    end
    values[name] = v
  end
  local baked = {}
  for _, name in ipairs(names) do if values[name] then baked[#baked + 1] = name end end
  return function(G, name, shape)
    if not values[name] then return nil end
    local n = G:make("table", {}, { name = name, shape = shape, values = values[name] })
    n.name = n.name or name
    return n
  end, baked
end

-- The default name of a request's files and functions: what distinguishes its results from
-- another request's. <graph>_<dims>[_<preset>][_<attrs>][_vjpclosed][_jvpclosed]_<dtype>:
-- dims joined by x; the preset unless torchlean; then each attr that differs from the preset's
-- default (an enum by its value, a number as name and value, e.g. eps1em05 for 1e-05).
-- The unroll policy and fusion change no result and are not in the name; passes are not
-- either (kg_write_files refuses to replace a default-named pair made for another request).
local function default_name(S, R, req)
  local dims = {}
  for _, d in ipairs(S.dims) do
    local v = R.dims[d[1]]
    dims[#dims + 1] = type(v) == "table" and table.concat(v, "x") or tostring(v)
  end
  local parts = { S.name, table.concat(dims, "x") }
  if req.semantics ~= "torchlean" then parts[#parts + 1] = req.semantics end
  for _, a in ipairs(S.attrs) do
    local v = R.attrs[a[1]]
    if v ~= spec.attr_default(a, req.semantics, req.dtype) then
      if a.kind == "enum" then parts[#parts + 1] = v
      else
        local t = util.gsub(util.gsub(util.gsub(util.num_str(v), "%.", "p"), "-", "m"), "%+", "")
        parts[#parts + 1] = a[1] .. t
      end
    end
  end
  if req.vjp_form == "closed" then parts[#parts + 1] = "vjpclosed" end
  if req.jvp_form == "closed" then parts[#parts + 1] = "jvpclosed" end
  if #R.baked > 0 then parts[#parts + 1] = "const_" .. table.concat(R.baked, "_") end
  if req.fma == "on" then parts[#parts + 1] = "fma" end
  parts[#parts + 1] = req.dtype
  return table.concat(parts, "_")
end

local function params_text(S, dims, attrs)
  local parts = {}
  for _, d in ipairs(S.dims) do
    local v = dims[d[1]]
    parts[#parts + 1] = d[1] .. "=" .. (type(v) == "table" and table.concat(v, "x") or tostring(v))
  end
  for _, a in ipairs(S.attrs) do
    local v = attrs[a[1]]
    parts[#parts + 1] = a[1] .. "=" .. (type(v) == "number" and util.num_str(v) or tostring(v))
  end
  return table.concat(parts, " ")
end

-- The set of inputs of F named by a comma-separated option value (nil when not given).
local function input_set(F, list, option)
  if list == nil then return nil end
  local inputs, names = {}, {}
  for _, io in ipairs(F.inputs) do inputs[io.name] = true; names[#names + 1] = io.name end
  local set = {}
  for name in util.gmatch(list .. ",", "([^,]*),") do
    if not inputs[name] then
      util.fail(option .. ": '" .. name .. "' is not an input of the graph (inputs: " .. table.concat(names, ", ") .. ")")
    end
    if set[name] then util.fail(option .. ": '" .. name .. "' is given twice") end
    set[name] = true
  end
  return set
end

-- The graph IR of the request's passes, after simplify; with `only` (a list of pass names), of
-- those and what they need to come out as they would among all the request's passes: the
-- saved values forward_train keeps and the arguments of vjp_saved and train follow what those
-- two read (prune_saved).
function pipeline.graph(req, only)
  check_options(req)
  local S = spec.find(req.graph)
  local dims, attrs = spec.bind(S, req.params or {}, req.semantics, req.dtype)
  local ctx = { dims = dims, attrs = attrs, dtype = req.dtype, semantics = req.semantics }
  local dumps = {}
  local function after(pass, G)
    if req.check_ir then ir.verify(G, pass) end
    if req.dump_ir == pass then dumps[#dumps + 1] = ir.dump(G, pass) end
    return G
  end
  local leaf, baked = baked_inputs(S, ctx, req.consts)
  if only and #only == 0 then -- joining parts made elsewhere (which checked the rest): no graph
    return { S = S, dims = dims, attrs = attrs, graphs = {}, dumps = dumps, ctx = ctx, baked = baked }
  end
  local F, fb = spec.forward_graph(S, ctx, leaf)
  after("forward", F)
  if req.vjp_form == "closed" and not S.vjp then util.fail(S.name .. ": has no closed-form VJP") end
  if req.jvp_form == "closed" and not S.jvp then util.fail(S.name .. ": has no closed-form JVP") end
  local R = { F = F, fb = fb, S = S, ctx = ctx, req = req,
    wrt = input_set(F, req.wrt, "--wrt"), train = input_set(F, req.train, "--train") }
  if R.wrt and R.train then
    for name in pairs(R.wrt) do
      if R.train[name] then util.fail("--wrt: '" .. name .. "' is trainable (--train): the train pass updates it") end
    end
  end
  local requested, built = {}, {}
  for _, p in ipairs(req.passes) do requested[p] = true end
  for _, p in ipairs(only or req.passes) do built[p] = true end
  if requested.forward_train and (built.forward_train or built.vjp_saved or built.train) then
    for _, p in ipairs(READERS) do built[p] = requested[p] end
  end
  local graphs, list = {}, {}
  for _, p in ipairs(req.passes) do
    if built[p] then
      list[#list + 1] = p
      graphs[p] = p == "forward" and F or after(p, PASS[p].graph(R))
    end
  end
  for _, p in ipairs(list) do graphs[p] = simplify.run(graphs[p]) end
  prune_saved(graphs, requested)
  for _, p in ipairs(list) do
    if req.check_ir then ir.verify(graphs[p], "simplify(" .. p .. ")") end
    if req.dump_ir == "simplify" then dumps[#dumps + 1] = ir.dump(graphs[p], "simplify(" .. p .. ")") end
  end
  return { S = S, dims = dims, attrs = attrs, graphs = graphs, dumps = dumps, ctx = ctx, baked = baked }
end


-- One pass's function and what the files say about it (a "part"): its C text, size macros,
-- prototype, entry point, argument metadata, the helpers and math functions it calls. Parts are
-- plain data (strings, numbers, booleans, lists, records with identifier keys: util.serialize
-- writes them), so that a pass generated in another Lua state joins the others exactly as one
-- made here (kg_lua.c generates a request's passes in parallel, see pipeline.plan).
local function make_part(R, req, pass, base, where)
  local dtype = req.dtype
  local fn = base .. "_" .. pass
  local part = { pass = pass, dumps = {}, helpers = {}, vm = {}, tables = {} }
  local L = lower.run(R.graphs[pass], dtype)
  for _, t in ipairs(L.tables) do t.cname = base .. "_" .. t.name; part.tables[#part.tables + 1] = t end
  if #L.params + 1 > emit.ARGS_MAX then -- and the workspace: tcc compiles calls of at most about 250
    util.fail(util.format("%s: the %s function would take %d arguments (at most %d): fewer inputs or outputs",
      where, pass, #L.params + 1, emit.ARGS_MAX))
  end
  for _, p in ipairs(L.params) do -- generated code indexes with int
    if p.cname:sub(1, #base + 1) == base .. "_" then -- would hide a function of the file
      util.fail(util.format("%s: argument name %s begins with the C name prefix %s_: rename it or use --name", where, p.cname, base))
    end
    if p.count > INT_MAX then
      util.fail(util.format("%s: %s has %d elements; kernels index with int (at most %d)", where, p.cname, p.count, INT_MAX))
    end
  end
  local function after(what)
    if req.check_ir then loops.verify(L, what .. "(" .. pass .. ")") end
    if req.dump_ir == what then part.dumps[#part.dumps + 1] = loops.dump(L, what .. "(" .. pass .. ")") end
  end
  after("lower")
  fuse.run(L, req.fuse)
  after("fuse")
  if req.fuse ~= "none" then block.run(L, emit.SIZEOF[dtype], req.target, req.unroll, req.fma == "on") end
  fuse.plan(L)
  after("block")
  if L.ws_size > INT_MAX then util.fail(util.format("%s: the %s workspace would exceed %d elements", R.S.name, pass, INT_MAX)) end
  schedule.run(L, req.unroll, fn, req.target, dtype)
  part.terms = L.unrolled_terms
  local helpers = {}
  local out = emit.fn(fn, L, dtype, helpers, PASS[pass].doc, req.fma == "on", req.target)
  for name, h in pairs(helpers) do part.helpers[#part.helpers + 1] = { name = name, op = h.op, math = h.math, dtype = h.dtype } end
  part.statements, part.x86, part.guarded, part.vec, part.text = out.statements, out.x86 or false, out.guarded or false,
    out.vec or false, out.text()
  for name in pairs(out.vm) do part.vm[#part.vm + 1] = name end
  part.decl = emit.declarations(fn, L, dtype, base:upper(), pass, PASS[pass].doc)
  local init_of = {}
  for _, i in ipairs(R.S.inputs) do init_of[i[1]] = i.init end
  local meta = { fn = fn, ws = L.ws_size, params = {} }
  for i, p in ipairs(L.params) do
    meta.params[i] = { cname = p.cname, name = p.name, role = p.arg_role, shape = p.shape, count = p.count,
      file = p.name .. roles[p.arg_role].file,
      init = init_of[p.name] or (p.arg_role == "state" and "positive") or "normal" }
  end
  part.meta = meta
  return part
end

-- How kg_lua.c may split the request: one line "COST PASSES" per group of passes that can be
-- generated in a Lua state of its own (each pass alone, with its cost), or one line for all.
-- A request with baked inputs stays whole (its tables are not data a part carries), and so
-- does one that dumps IR (the dumps come in pass order, stage by stage).
function pipeline.plan(req)
  check_options(req)
  if req.dump_ir or (req.consts and #req.consts > 0) then return "1 " .. table.concat(req.passes, ",") end
  local lines = {}
  for i, p in ipairs(req.passes) do lines[i] = PASS[p].cost .. " " .. p end
  return table.concat(lines, "\n")
end

-- The parts of the passes `list` (comma-separated names) as text for pipeline.generate in
-- another state: the length of what util.serialize makes of them, a newline, that, then
-- their C texts, which util.serialize would escape and Lua's parser read character by
-- character (LayerNorm 8x64, three passes: 0.28 ms for 51 KB).
function pipeline.parts(req, list)
  local only = {}
  for name in util.gmatch(list, "[^,]+") do only[#only + 1] = name end
  local R = pipeline.graph(req, only)
  local base = req.name or default_name(R.S, R, req)
  local out, texts = {}, {}
  for _, pass in ipairs(only) do
    local part = make_part(R, req, pass, base, R.S.file .. ": graph " .. R.S.name)
    assert(#part.tables == 0 and #part.dumps == 0, "pipeline.parts: a part with tables or dumps")
    part.tables, part.dumps = nil, nil
    texts[#texts + 1] = part.text
    part.text = #part.text
    out[#out + 1] = part
  end
  local meta = util.serialize(out)
  return #meta .. "\n" .. meta .. table.concat(texts)
end

-- The parts in a text of pipeline.parts, by pass name, into `made`.
local function read_parts(text, made)
  local at, n = 1, 0
  while text:byte(at) ~= 10 do n = n * 10 + text:byte(at) - 48; at = at + 1 end
  local parts = load("return " .. text:sub(at + 1, at + n), "=parts", "t", {})()
  at = at + n + 1
  for _, part in ipairs(parts) do
    local len = part.text
    part.text = text:sub(at, at + len - 1)
    at = at + len
    made[part.pass] = part
  end
end

-- Generate everything for a request: header, AOT source, JIT source and argument metadata.
-- given: texts of pipeline.parts for some of the passes (made in other states), or nil.
function pipeline.generate(req, given)
  local made = {}
  for _, text in ipairs(given or {}) do read_parts(text, made) end
  check_options(req)
  local own = {}
  for _, pass in ipairs(req.passes) do if not made[pass] then own[#own + 1] = pass end end
  local R = pipeline.graph(req, own)
  local S, dtype = R.S, req.dtype
  local base = req.name or default_name(S, R, req)
  local upper = base:upper()
  local helpers, fns, protos, sizes, entries = {}, {}, {}, {}, {}
  local dumps = R.dumps
  local result = { name = base, functions = {} }
  local where = S.file .. ": graph " .. S.name
  local size_seen = {} -- macro -> what it stands for; two things that would give the header
  -- one macro are an error (the argument forward_ws and the forward pass's workspace: FORWARD_WS_SIZE)
  local statements, terms, tables_used, x86_used, vm_used, guarded_used, vec_used = 0, 0, {}, false, {}, false, false
  for _, pass in ipairs(req.passes) do
    local part = made[pass] or make_part(R, req, pass, base, where)
    for _, d in ipairs(part.dumps or {}) do dumps[#dumps + 1] = d end
    for _, t in ipairs(part.tables or {}) do tables_used[t.name] = t end
    for _, h in ipairs(part.helpers) do helpers[h.name] = { op = h.op, math = h.math, dtype = h.dtype } end
    terms = terms + part.terms
    statements = statements + part.statements
    x86_used = x86_used or part.x86
    guarded_used = guarded_used or part.guarded
    vec_used = vec_used or part.vec
    for _, name in ipairs(part.vm) do vm_used[name] = true end
    fns[#fns + 1] = part.text
    for _, m in ipairs(part.decl.sizes) do
      if size_seen[m.macro] and size_seen[m.macro] ~= m.owner then
        util.fail(where .. ": the header would define " .. m.macro .. " for both " .. size_seen[m.macro] .. " and " .. m.owner .. ": rename one")
      end
      if not size_seen[m.macro] then sizes[#sizes + 1] = m.line end
      size_seen[m.macro] = m.owner
    end
    protos[#protos + 1] = part.decl.prototype
    entries[#entries + 1] = part.decl.entry
    result.functions[pass] = part.meta
  end
  result.dumps = table.concat(dumps)
  -- the banner: graph, params and options say what the files compute (kg_write_files compares
  -- them before replacing default-named files); the code line says how (results identical)
  local opts = util.format("dtype=%s semantics=%s vjp=%s jvp=%s passes=%s", dtype, req.semantics,
    req.vjp_form, req.jvp_form, table.concat(req.passes, ","))
  if req.wrt then opts = opts .. " wrt=" .. req.wrt end
  if req.train then opts = opts .. " train=" .. req.train .. " optimizer=" .. req.optimizer end
  if #R.baked > 0 then opts = opts .. " const=" .. table.concat(R.baked, ",") end
  if req.fma == "on" then opts = opts .. " fma=on" end
  local tables, table_bytes = {}, 0 -- the baked inputs the functions read, in input order
  for _, name in ipairs(R.baked) do
    local t = tables_used[name]
    if t then tables[#tables + 1] = t; table_bytes = table_bytes + t.count * emit.SIZEOF[dtype] end
  end
  local banner = {
    "/* Generated by kerngen " .. pipeline.VERSION .. ". Do not edit: regenerate instead.",
    " * graph:   " .. S.name .. (S.alias_of and (" (alias of " .. S.alias_of .. ")") or "") .. " -- " .. S.summary,
    " * params:  " .. params_text(S, R.dims, R.attrs),
    " * options: " .. opts,
    " * code:    unroll=" .. req.unroll .. " fuse=" .. req.fuse .. (req.target == "scalar" and " target=scalar" or "") }
  if #R.baked > 0 then
    local list = {}
    for _, t in ipairs(tables) do list[#list + 1] = t.name .. " " .. util.shape_str(t.shape) end
    banner[#banner + 1] = #list == 0 and " * tables:  none (no function here reads the baked inputs)" or
      util.format(" * tables:  %s baked in as static const %s tables: %d bytes (flash)", table.concat(list, ", "),
        emit.CTYPE[dtype], table_bytes)
  end
  banner[#banner + 1] = " */"
  banner = table.concat(banner, "\n")
  local helper_text, table_text = emit.helpers(helpers, req.fma == "on"), emit.tables(tables, dtype)
  local fn_text = table.concat(fns, "\n")
  result.header_file, result.source_file = base .. ".h", base .. ".c"
  result.header = template.fill("templates/kernel.h.in", {
    banner = banner, guard = upper .. "_H", sizes = table.concat(sizes, "\n"), prototypes = table.concat(protos, "\n") })
  local guard = template.fill("templates/compiler_guard.c.in", {})
  -- what the options add before the code: the machine code's macros, the fma check; KG_WIDE and
  -- KG_TILE_LANES where a nest comes in several forms (block.lua), KG_VEC where reduces do
  -- (emit_c.lua)
  local preamble = (x86_used and template.fill("templates/x86.c.in", x86.template_values(vm_used, dtype)) or "")
    .. (guarded_used and template.fill("templates/forms.c.in", {}) or "")
    .. (vec_used and template.fill("templates/vec.c.in", {}) or "")
    .. (req.fma == "on" and template.fill("templates/fma.c.in", emit.fma_names(dtype)) or "")
  result.source = template.fill("templates/kernel.c.in", { banner = banner, header = result.header_file, preamble = preamble,
    compiler_guard = guard, helpers = helper_text, tables = table_text, functions = fn_text })
  result.jit_source = template.fill("templates/jit.c.in", {
    prototypes = emit.libm_prototypes(), compiler_guard = guard, preamble = preamble, helpers = helper_text, tables = table_text,
    functions = fn_text, entries = table.concat(entries, "\n") })
  result.libm = emit.LIBM
  result.stats = { statements = statements, bytes = #result.source, terms = terms, table_bytes = table_bytes }
  result.params_text = params_text(S, R.dims, R.attrs)
  result.named = req.name ~= nil
  result.has_closed_vjp = S.vjp ~= nil
  result.has_closed_jvp = S.jvp ~= nil
  return result
end

---------------------------------------------------------------------------------------------
-- list and dot

function pipeline.list()
  local reg = spec.registry()
  local out = {}
  for _, name in ipairs(reg.names) do
    local S = reg.byname[name]
    if S.alias_of then
      out[#out + 1] = util.format("%-24s alias of %s", name, S.alias_of)
    else
      out[#out + 1] = util.format("%-24s %s", name, S.summary)
      local dims, attrs, ins = {}, {}, {}
      for _, d in ipairs(S.dims) do dims[#dims + 1] = d[1] .. "=" .. tostring(d[2]) end
      for _, a in ipairs(S.attrs) do
        local kind = a.kind == "enum" and (" (" .. table.concat(a.values, "|") .. ")") or ""
        local def
        if a.torchlean ~= nil then
          def = "torchlean " .. tostring(util.num_str(a.torchlean)) .. ", pytorch " .. tostring(util.num_str(a.pytorch))
        else
          def = "default " .. tostring(a.default)
        end
        attrs[#attrs + 1] = a[1] .. kind .. ": " .. def
      end
      for _, i in ipairs(S.inputs) do
        local d = {}
        for k = 2, #i do d[#d + 1] = i[k] end
        ins[#ins + 1] = i[1] .. "[" .. table.concat(d, "][") .. "]" .. (i.when and "*" or "")
      end
      out[#out + 1] = "    dims:    " .. table.concat(dims, " ")
      if #attrs > 0 then out[#out + 1] = "    attrs:   " .. table.concat(attrs, "; ") end
      out[#out + 1] = "    inputs:  " .. table.concat(ins, ", ")
      out[#out + 1] = "    outputs: " .. table.concat(S.outputs, ", ")
      if S.vjp or S.jvp then out[#out + 1] = "    closed forms: " .. (S.vjp and "vjp " or "") .. (S.jvp and "jvp" or "") end
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "dims and attrs are given as NAME=VALUE; attrs default by --semantics (torchlean | pytorch);"
  out[#out + 1] = "inputs marked * exist only for some attrs (e.g. rmsnorm beta with bias=1)."
  return table.concat(out, "\n") .. "\n"
end

function pipeline.names()
  local reg, out = spec.registry(), {}
  for _, name in ipairs(reg.names) do
    if not reg.byname[name].alias_of then out[#out + 1] = name end
  end
  return table.concat(out, "\n") .. "\n"
end

-- Graphviz of the forward graph, or of another pass (req.pass). Views that only move data
-- (reshape, broadcast, pick0, unpick0) are drawn as their argument, constants join their
-- consumer's label, and the graphs a spec called (g.call) are clusters: the picture shows the
-- computation, not the plumbing. Every label is generator text or a validated identifier.
function pipeline.dot(req)
  local R = pipeline.graph(req)
  local G = R.graphs[req.pass or "forward"]
  if not G then util.fail("dot: unknown pass '" .. tostring(req.pass) .. "'") end
  local function shown(n)
    while ops[n.op].kind == "view" and n.op ~= "detach" do n = n.args[1] end
    return n
  end
  local out = { "digraph \"" .. R.S.name .. "\" {", "  rankdir=TB; nodesep=0.25; ranksep=0.3;",
    "  node [fontname=\"monospace\", fontsize=9, height=0.3, margin=\"0.06,0.03\"];",
    "  edge [arrowsize=0.6];" }
  local clusters, order, lines = {}, {}, {}
  local function emit_node(n, text)
    local prefix = n.name and util.match(n.name, "^(%a[%w_]*)%.") -- g.call'ed graph
    if prefix then
      if not clusters[prefix] then clusters[prefix] = {}; order[#order + 1] = prefix end
      table.insert(clusters[prefix], text)
    else
      lines[#lines + 1] = text
    end
  end
  local drawn = {}
  for _, n in ipairs(G.nodes) do
    local is_view = ops[n.op].kind == "view" and n.op ~= "detach"
    if n.op ~= "const" and not is_view then
      drawn[n] = true
      local label, consts, edges, seen = n.op, {}, {}, {}
      if n.op == "input" then label = n.attr.name .. (n.attr.role ~= "input" and ("." .. n.attr.role) or "") end
      if n.op == "table" then label = n.attr.name .. " (const)" end
      for _, a in ipairs(n.args) do
        local s = shown(a)
        if s.op == "const" then consts[#consts + 1] = util.num_str(s.attr.value)
        elseif not seen[s] then seen[s] = true; edges[#edges + 1] = s end
      end
      if #consts > 0 then label = label .. " " .. table.concat(consts, " ") end
      if n.name and n.op ~= "input" and n.op ~= "table" then label = n.name .. "\\n" .. label end
      emit_node(n, util.format("  n%d [label=\"%s\\n%s\", shape=%s];", n.id, label, util.shape_str(n.shape),
        (n.op == "input" or n.op == "table") and "box" or "ellipse"))
      for _, s in ipairs(edges) do lines[#lines + 1] = util.format("  n%d -> n%d;", s.id, n.id) end
    end
  end
  for _, prefix in ipairs(order) do
    out[#out + 1] = "  subgraph cluster_" .. prefix .. " {"
    out[#out + 1] = "    label=\"" .. prefix .. "\"; style=rounded; color=gray; fontname=\"monospace\"; fontsize=9;"
    for _, l in ipairs(clusters[prefix]) do out[#out + 1] = "  " .. l end
    out[#out + 1] = "  }"
  end
  for _, l in ipairs(lines) do out[#out + 1] = l end
  for i, o in ipairs(G.outputs) do
    local s = shown(o.node)
    out[#out + 1] = util.format("  out%d [label=\"%s (%s)\", shape=doubleoctagon];", i, o.name, o.role)
    if drawn[s] then
      out[#out + 1] = util.format("  n%d -> out%d;", s.id, i)
    else -- a constant output (a zero gradient)
      out[#out + 1] = util.format("  c%d [label=\"%s\", shape=plaintext]; c%d -> out%d;", i,
        util.num_str(s.attr.value or 0), i, i)
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

return pipeline
