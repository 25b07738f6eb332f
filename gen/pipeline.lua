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
-- its builder, the spec and the request; it returns a graph in the IR, before simplify.

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
local function prune_saved(graphs)
  local readers = {}
  for _, p in ipairs({ "vjp_saved", "train" }) do readers[#readers + 1] = graphs[p] end
  if not graphs.forward_train or #readers == 0 then return end
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
  F.outputs = kept(F.outputs)
  graphs.forward_train = simplify.run(F)
  for _, p in ipairs({ "vjp_saved", "train" }) do
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
  { name = "forward", doc = "forward pass", graph = function(R) return R.F end },
  { name = "vjp", doc = "reverse mode: gradients of every input from output cotangents",
    graph = function(R) return selected_grads(derived_vjp(R), R) end },
  { name = "jvp", doc = "forward mode: output tangents from input tangents", graph = function(R)
    if R.req.jvp_form == "closed" then return jvp.closed(R.F, R.S, R.ctx, R.fb) end
    return jvp.derive(R.F)
  end },
  { name = "forward_train", doc = "forward pass that also writes what vjp_saved reads (saved)", graph = forward_train },
  { name = "vjp_saved", doc = "reverse mode reading what forward_train saved: gradients of every input",
    graph = function(R) return selected_grads(vjp_saved(R), R) end },
  { name = "train", doc = "training step: vjp_saved, then the optimizer updates the trainable parameters in place",
    graph = train, needs_train = true },
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
      util.fail(string.format("%s: %d values, but the input has shape %s (%d elements)", where, #v, util.shape_str(shapes[name]), count))
    end
    for k = 1, count do
      local x = v[k]
      if x ~= x or x == math.huge or x == -math.huge then
        util.fail(string.format("%s: element %d is %s; a table holds finite values", where, k - 1,
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

-- The graph IR of one pass, after simplify.
function pipeline.graph(req)
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
  local graphs = {}
  for _, p in ipairs(req.passes) do graphs[p] = p == "forward" and F or after(p, PASS[p].graph(R)) end
  for _, p in ipairs(req.passes) do graphs[p] = simplify.run(graphs[p]) end
  prune_saved(graphs)
  for _, p in ipairs(req.passes) do
    if req.check_ir then ir.verify(graphs[p], "simplify(" .. p .. ")") end
    if req.dump_ir == "simplify" then dumps[#dumps + 1] = ir.dump(graphs[p], "simplify(" .. p .. ")") end
  end
  return { S = S, dims = dims, attrs = attrs, graphs = graphs, dumps = dumps, ctx = ctx, baked = baked }
end


-- Generate everything for a request: header, AOT source, JIT source and argument metadata.
function pipeline.generate(req)
  local R = pipeline.graph(req)
  local S, dtype = R.S, req.dtype
  local base = req.name or default_name(S, R, req)
  local upper = base:upper()
  local helpers, fns, protos, sizes, entries = {}, {}, {}, {}, {}
  local dumps = R.dumps
  local result = { name = base, functions = {} }
  local where = S.file .. ": graph " .. S.name
  local size_seen, init_of = {}, {}
  for _, i in ipairs(S.inputs) do init_of[i[1]] = i.init end
  local statements, terms, tables_used, x86_used, vm_used = 0, 0, {}, false, {}
  for _, pass in ipairs(req.passes) do
    local fn = base .. "_" .. pass
    local L = lower.run(R.graphs[pass], dtype)
    for _, t in ipairs(L.tables) do t.cname = base .. "_" .. t.name; tables_used[t.name] = t end
    if #L.params + 1 > emit.ARGS_MAX then -- and the workspace: tcc compiles calls of at most about 250
      util.fail(string.format("%s: the %s function would take %d arguments (at most %d): fewer inputs or outputs",
        where, pass, #L.params + 1, emit.ARGS_MAX))
    end
    for _, p in ipairs(L.params) do -- generated code indexes with int
      if p.cname:sub(1, #base + 1) == base .. "_" then -- would hide a function of the file
        util.fail(string.format("%s: argument name %s begins with the C name prefix %s_: rename it or use --name", where, p.cname, base))
      end
      if p.count > INT_MAX then
        util.fail(string.format("%s: %s has %d elements; kernels index with int (at most %d)", where, p.cname, p.count, INT_MAX))
      end
    end
    local function after(what)
      if req.check_ir then loops.verify(L, what .. "(" .. pass .. ")") end
      if req.dump_ir == what then dumps[#dumps + 1] = loops.dump(L, what .. "(" .. pass .. ")") end
    end
    after("lower")
    fuse.run(L, req.fuse)
    after("fuse")
    if req.fuse ~= "none" then block.run(L, emit.SIZEOF[dtype], req.target, req.unroll) end
    fuse.plan(L)
    after("block")
    if L.ws_size > INT_MAX then util.fail(string.format("%s: the %s workspace would exceed %d elements", S.name, pass, INT_MAX)) end
    schedule.run(L, req.unroll, fn, req.target, dtype)
    terms = terms + L.unrolled_terms
    local out = emit.fn(fn, L, dtype, helpers, PASS[pass].doc, req.fma == "on", req.target)
    statements = statements + out.statements
    x86_used = x86_used or out.x86
    for name in pairs(out.vm) do vm_used[name] = true end
    fns[#fns + 1] = out.text()
    local d = emit.declarations(fn, L, dtype, upper, pass, PASS[pass].doc, size_seen, where)
    for _, line in ipairs(d.sizes) do sizes[#sizes + 1] = line end
    protos[#protos + 1] = d.prototype
    entries[#entries + 1] = d.entry
    local meta = { fn = fn, ws = L.ws_size, params = {} }
    for i, p in ipairs(L.params) do
      meta.params[i] = { cname = p.cname, name = p.name, role = p.arg_role, shape = p.shape, count = p.count,
        file = p.name .. roles[p.arg_role].file,
        init = init_of[p.name] or (p.arg_role == "state" and "positive") or "normal" }
    end
    result.functions[pass] = meta
  end
  result.dumps = table.concat(dumps)
  -- the banner: graph, params and options say what the files compute (kg_write_files compares
  -- them before replacing default-named files); the code line says how (results identical)
  local opts = string.format("dtype=%s semantics=%s vjp=%s jvp=%s passes=%s", dtype, req.semantics,
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
      string.format(" * tables:  %s baked in as static const %s tables: %d bytes (flash)", table.concat(list, ", "),
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
  -- what the options add before the code: the machine code's macros, the fma check
  local preamble = (x86_used and template.fill("templates/x86.c.in", x86.template_values(vm_used, dtype)) or "")
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
      out[#out + 1] = string.format("%-24s alias of %s", name, S.alias_of)
    else
      out[#out + 1] = string.format("%-24s %s", name, S.summary)
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
      emit_node(n, string.format("  n%d [label=\"%s\\n%s\", shape=%s];", n.id, label, util.shape_str(n.shape),
        (n.op == "input" or n.op == "table") and "box" or "ellipse"))
      for _, s in ipairs(edges) do lines[#lines + 1] = string.format("  n%d -> n%d;", s.id, n.id) end
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
    out[#out + 1] = string.format("  out%d [label=\"%s (%s)\", shape=doubleoctagon];", i, o.name, o.role)
    if drawn[s] then
      out[#out + 1] = string.format("  n%d -> out%d;", s.id, i)
    else -- a constant output (a zero gradient)
      out[#out + 1] = string.format("  c%d [label=\"%s\", shape=plaintext]; c%d -> out%d;", i,
        util.num_str(s.attr.value or 0), i, i)
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

return pipeline
