-- spec: loads graph specs in a sandbox, validates their declarations, binds NAME=VALUE
-- parameters (dims and attrs, with semantics presets), and runs a spec's forward chain through
-- the builder to produce the forward graph.
--
-- A spec is Lua source loaded as text only (mode "t": no bytecode) with an allow-listed,
-- locked environment: no io, os, require, load, debug, string.dump, setmetatable, pcall.
-- Every call into spec code runs under the host's instruction budget and memory cap
-- (kg_host.sandbox_call). Errors name the spec file and line.

local host = require("kg_host")
local util = require("util")
local ir = require("ir")

local spec = {}

local INSTRUCTION_BUDGET = 20000000
local MEMORY_CAP = 64 * 1024 * 1024

---------------------------------------------------------------------------------------------
-- Sandbox

local function copy(t, skip)
  local c = {}
  for k, v in pairs(t) do if not (skip and skip[k]) then c[k] = v end end
  return c
end

local SAFE_GLOBALS = { "assert", "error", "ipairs", "next", "pairs", "select", "tonumber",
  "tostring", "type", "rawequal", "rawlen" }

local function sandbox_env(chunkname)
  local env = {}
  for _, k in ipairs(SAFE_GLOBALS) do env[k] = _G[k] end
  env.math = copy(math)
  env.string = copy(string, { dump = true })
  env.table = copy(table)
  env.unpack = table.unpack
  env._VERSION = _VERSION
  return setmetatable(env, {
    __index = function(_, k)
      error(string.format("'%s' is not available in graph specs (sandbox)", tostring(k)), 2)
    end,
    __newindex = function(_, k)
      error(string.format("assignment to global '%s' (use local)", tostring(k)), 2)
    end,
    __metatable = false,
  })
end

-- Run spec code under the budget; spec errors become user errors that name the file.
local function guarded(chunkname, fn, ...)
  local res = table.pack(host.sandbox_call(INSTRUCTION_BUDGET, MEMORY_CAP, fn, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  local e = res[2]
  if util.is_failure(e) then error(e, 0) end
  local msg = tostring(e)
  if not msg:find("^" .. chunkname:gsub("%p", "%%%0") .. ":") then msg = chunkname .. ": " .. msg end
  util.fail(msg)
end
spec.guarded = guarded

---------------------------------------------------------------------------------------------
-- Declarations

local function check_decl(S, file)
  local function bad(msg) util.fail(file .. ": " .. msg) end
  if type(S) ~= "table" then bad("a spec must return a table") end
  if S.alias_of then
    if type(S.name) ~= "string" or type(S.alias_of) ~= "string" then bad("alias needs name and alias_of") end
    return
  end
  if type(S.name) ~= "string" or not S.name:match("^[%a_][%w_]*$") then bad("name must be a C identifier") end
  local where = file .. ": graph " .. S.name
  local function need(field, ty)
    if type(S[field]) ~= ty then util.fail(where .. ": field '" .. field .. "' must be a " .. ty) end
  end
  need("summary", "string"); need("dims", "table"); need("inputs", "table"); need("outputs", "table")
  need("forward", "function")
  S.attrs = S.attrs or {}
  local names = {}
  local function fresh(n, what)
    if type(n) ~= "string" or not n:match("^[%a_][%w_]*$") then util.fail(where .. ": " .. what .. " name must be an identifier") end
    if names[n] then util.fail(where .. ": duplicate name '" .. n .. "'") end
    if what ~= "dim" and what ~= "attr" and spec.reserved(n) then
      util.fail(where .. ": " .. what .. " name '" .. n .. "' is reserved in generated C")
    end
    names[n] = what
  end
  for _, d in ipairs(S.dims) do fresh(d[1], "dim") end
  for _, a in ipairs(S.attrs) do fresh(a[1], "attr") end
  for _, i in ipairs(S.inputs) do
    fresh(i[1], "input")
    for k = 2, #i do
      if names[i[k]] ~= "dim" then util.fail(where .. ": input " .. i[1] .. ": unknown dim '" .. tostring(i[k]) .. "'") end
    end
  end
  for _, o in ipairs(S.outputs) do
    if type(o) ~= "string" then util.fail(where .. ": outputs are names") end
    fresh(o, "output")
  end
end

-- Names the generated C uses itself (emit_c), and C's keywords: tensors may not take them.
local C_KEYWORDS = {}
for k in ([[auto break case char const continue default do double else enum extern float for goto
  if inline int long register restrict return short signed sizeof static struct switch typedef
  union unsigned void volatile while _Bool _Complex _Imaginary]]):gmatch("%S+") do C_KEYWORDS[k] = true end
function spec.reserved(name)
  return C_KEYWORDS[name] or name == "ws" or name == "bad" or name == "acc"
    or name:match("^[irh]%d+$") ~= nil or name:match("^ws_%d+$") ~= nil or name:match("^kg_") ~= nil
end

-- Loads one spec file (text) and returns its graph declarations.
function spec.load_text(text, file)
  local chunkname = file
  local chunk, err = load(text, "@" .. chunkname, "t", sandbox_env(chunkname))
  if not chunk then util.fail(tostring(err)) end
  local S = guarded(chunkname, chunk)
  local list = (type(S) == "table" and S[1] ~= nil) and S or { S }
  for _, s in ipairs(list) do
    check_decl(s, file)
    s.file = file
  end
  return list
end

-- All graphs: the built-in graphs/ (embedded, or from disk in developer mode).
local registry
function spec.registry()
  if registry then return registry end
  registry = { byname = {}, names = {} }
  for _, path in ipairs(host.resources("graphs/")) do
    if path:match("%.lua$") then
      for _, s in ipairs(spec.load_text(host.resource(path), path)) do
        if registry.byname[s.name] then util.fail(path .. ": graph '" .. s.name .. "' defined twice") end
        registry.byname[s.name] = s
        registry.names[#registry.names + 1] = s.name
      end
    end
  end
  table.sort(registry.names)
  return registry
end

-- A graph by name, or a spec file given by path (anything with a '/' or ending in .lua).
function spec.find(name)
  if name:find("/") or name:match("%.lua$") then
    local text, err = host.read_file(name)
    if not text then util.fail(err) end
    local list = spec.load_text(text, name)
    return list[1]
  end
  local reg = spec.registry()
  local S = reg.byname[name]
  if not S then
    util.fail("unknown graph '" .. name .. "' (known: " .. table.concat(reg.names, ", ") .. ")")
  end
  if S.alias_of then
    local target = reg.byname[S.alias_of]
    if not target then util.fail(S.file .. ": alias of unknown graph '" .. S.alias_of .. "'") end
    return setmetatable({ name = S.name, alias_of = S.alias_of }, { __index = target })
  end
  return S
end

---------------------------------------------------------------------------------------------
-- Binding NAME=VALUE parameters

local DTYPE_EPS = { f32 = 2.0 ^ -23, f64 = 2.0 ^ -52 }

local function parse_int(s) return s:match("^%d+$") and math.tointeger(tonumber(s)) end

local function parse_dim(S, d, s)
  local what = S.name .. ": dim " .. d[1] .. "=" .. s
  if d.kind == "shape" then
    local shape = {}
    for part in (s .. "x"):gmatch("([^x]*)x") do
      local v = parse_int(part)
      if not v or v < 1 then util.fail(what .. ": expected extents >= 1 joined by 'x', e.g. 2x3x4") end
      shape[#shape + 1] = v
    end
    if #shape > 8 then util.fail(what .. ": at most 8 axes") end
    return shape
  end
  local v = parse_int(s)
  local min = d.min or 1
  if not v or v < min then util.fail(what .. ": expected an integer >= " .. min) end
  if v > 1e8 then util.fail(what .. ": too large") end
  return v
end

local function parse_attr(S, a, s)
  local what = S.name .. ": attr " .. a[1] .. "=" .. s
  if a.kind == "enum" then
    for _, v in ipairs(a.values) do if v == s then return s end end
    util.fail(what .. ": expected one of " .. table.concat(a.values, ", "))
  end
  local v = tonumber(s)
  if not v or v ~= v or v == math.huge or v == -math.huge then util.fail(what .. ": expected a finite number") end
  if a.kind == "int" then
    v = math.tointeger(v)
    local ok = false
    for _, x in ipairs(a.values or {}) do if x == v then ok = true end end
    if not v or (a.values and not ok) then util.fail(what .. ": expected one of " .. table.concat(a.values, ", ")) end
    return v
  end
  if a.min and v < a.min then util.fail(what .. ": must be >= " .. util.num_str(a.min)) end
  return v + 0.0
end

-- The default of an attr under a semantics preset.
function spec.attr_default(a, semantics, dtype)
  local v = a[semantics]
  if v == nil then v = a.default end
  if v == "dtype_eps" then v = DTYPE_EPS[dtype] end
  return v
end

-- params: list of "NAME=VALUE". Returns dims and attrs tables (all filled).
function spec.bind(S, params, semantics, dtype)
  local dims, attrs, decl = {}, {}, {}
  for _, d in ipairs(S.dims) do decl[d[1]] = { d, "dim" } end
  for _, a in ipairs(S.attrs) do decl[a[1]] = { a, "attr" } end
  for _, p in ipairs(params) do
    local k, v = p:match("^([%a_][%w_]*)=(.+)$")
    if not k then util.fail(S.name .. ": bad parameter '" .. p .. "' (expected NAME=VALUE)") end
    local d = decl[k]
    if not d then
      local known = {}
      for _, x in ipairs(S.dims) do known[#known + 1] = x[1] end
      for _, x in ipairs(S.attrs) do known[#known + 1] = x[1] end
      util.fail(S.name .. ": unknown parameter '" .. k .. "' (known: " .. table.concat(known, ", ") .. ")")
    end
    if dims[k] ~= nil or attrs[k] ~= nil then util.fail(S.name .. ": parameter '" .. k .. "' given twice") end
    if d[2] == "dim" then dims[k] = parse_dim(S, d[1], v) else attrs[k] = parse_attr(S, d[1], v) end
  end
  for _, d in ipairs(S.dims) do
    if dims[d[1]] == nil then dims[d[1]] = parse_dim(S, d, tostring(d[2])) end
  end
  for _, a in ipairs(S.attrs) do
    if attrs[a[1]] == nil then attrs[a[1]] = spec.attr_default(a, semantics, dtype) end
  end
  if S.validate then
    local msg = guarded(S.file, S.validate, dims, attrs)
    if msg then util.fail(S.name .. ": " .. msg) end
  end
  return dims, attrs
end

function spec.input_shape(decl, dims)
  local shape = {}
  for k = 2, #decl do
    local v = dims[decl[k]]
    if type(v) == "table" then for _, e in ipairs(v) do shape[#shape + 1] = e end else shape[#shape + 1] = v end
  end
  return shape
end

function spec.active_inputs(S, attrs)
  local list = {}
  for _, i in ipairs(S.inputs) do
    if not i.when or guarded(S.file, i.when, attrs) then list[#list + 1] = i end
  end
  return list
end

---------------------------------------------------------------------------------------------
-- Forward graph

local builder = require("builder")

-- Runs S.forward into graph G. inputs: name -> node. Returns outputs (name -> node) and the
-- named values (for closed-form rules).
function spec.run_forward(S, G, ctx, inputs, prefix)
  local b = builder.new(G, S, ctx, prefix)
  local v = b.values
  for _, i in ipairs(spec.active_inputs(S, ctx.attrs)) do b.set(i[1], inputs[i[1]]) end
  guarded(S.file, S.forward, b.g, v)
  local outs = {}
  for _, o in ipairs(S.outputs) do
    local n = b.get(o)
    if not n then util.fail(S.file .. ": graph " .. S.name .. ": forward did not define output '" .. o .. "'") end
    outs[o] = n
  end
  return outs, b
end

-- The forward graph of S at bound dims/attrs: inputs, the node chain, outputs.
function spec.forward_graph(S, ctx)
  local G = ir.new()
  local inputs = {}
  for _, i in ipairs(spec.active_inputs(S, ctx.attrs)) do
    inputs[i[1]] = G:input(i[1], spec.input_shape(i, ctx.dims), "input")
  end
  local outs, b = spec.run_forward(S, G, ctx, inputs)
  for _, o in ipairs(S.outputs) do G.outputs[#G.outputs + 1] = { name = o, role = "output", node = outs[o] } end
  return G, b
end

return spec
