-- spec: loads graph specs in a sandbox, validates their declarations, binds NAME=VALUE
-- parameters (dims and attrs, with semantics presets), and runs a spec's forward chain through
-- the builder to produce the forward graph.
--
-- Specs are code from strangers, so this module is a security boundary (README, "The sandbox"):
--  * A spec is Lua source loaded as text only (mode "t": no bytecode) with an allow-listed,
--    locked environment: no io, os, require, load, debug, metatables, pcall, pattern matching,
--    table.move or random numbers. Every call into spec code runs under one budget per request
--    (instructions, wall-clock time, memory; kg_host.sandbox_call).
--  * The declaration a spec returns is validated and copied into the generator's own table
--    (declaration()); the spec never sees that copy, so nothing it does later can change what
--    was checked. Every name is a C identifier of at most util.NAME_MAX characters; the summary
--    is printable text that cannot end a C comment. Functions get copies of dims and attrs.
--  * Errors name the spec file and line.

local host = require("kg_host")
local util = require("util")
local ir = require("ir")

local spec = {}

local INSTRUCTION_BUDGET = 20000000 -- per request, over every call into spec code
local TIME_BUDGET_MS = 5000         -- likewise, wall-clock
local MEMORY_CAP = 64 * 1024 * 1024 -- bytes the spec code may hold at once
local CALL_DEPTH = 8                -- g.call nesting

spec.TIME_BUDGET_MS, spec.CALL_DEPTH = TIME_BUDGET_MS, CALL_DEPTH

---------------------------------------------------------------------------------------------
-- Sandbox

local function pick(t, keys)
  local c = {}
  for k in util.gmatch(keys, "%S+") do c[k] = t[k] end
  return c
end

local SAFE_GLOBALS = "assert error ipairs select tonumber type rawequal rawlen"
-- C functions whose time is linear in their input (which the memory cap bounds); string
-- methods on values reach the same restricted string table (kg_lua.c strips the global one).
local SAFE_STRING = "byte char format len lower rep reverse sub upper"
local SAFE_TABLE = "concat insert remove unpack"
local SAFE_MATH = [[abs ceil cos exp floor fmod huge log max maxinteger min mininteger modf pi
  sin sqrt tan tointeger type ult acos asin atan]] -- no random: output must be deterministic
-- Specs sort with a stable merge sort in Lua: Lua's own table.sort runs in C, unseen by the
-- hook (100000 copies of one 64 KiB string kept it busy for minutes), and picks pivots from the
-- clock once a partition is unbalanced, so elements that compare equal (1 and 1.0, or ties of
-- a comparator) came out in another order from run to run. This one runs under the hook like
-- any spec code; the bounds on elements and on the bytes of strings keep each step (a string
-- compare, one VM instruction) short.
local SORT_MAX, SORT_STRING_BYTES = 100000, 1 << 20
local function less(a, b) return a < b end
local function stable_sort(t, cmp)
  if type(t) ~= "table" then error("bad argument #1 to 'sort' (table expected, got " .. type(t) .. ")", 2) end
  local n = rawlen(t)
  if n > SORT_MAX then error("table.sort: more than " .. SORT_MAX .. " elements (sandbox)", 2) end
  if cmp ~= nil and type(cmp) ~= "function" then error("bad argument #2 to 'sort' (function expected)", 2) end
  local bytes = 0
  for i = 1, n do
    local v = rawget(t, i)
    if type(v) == "string" then bytes = bytes + #v end
  end
  if bytes > SORT_STRING_BYTES then
    error("table.sort: strings of more than " .. SORT_STRING_BYTES .. " bytes in all (sandbox)", 2)
  end
  local lt, src, dst, width = cmp or less, {}, {}, 1
  for i = 1, n do src[i] = rawget(t, i) end
  while width < n do
    for lo = 1, n, 2 * width do
      local mid, hi = math.min(lo + width, n + 1), math.min(lo + 2 * width, n + 1)
      local a, b, k = lo, mid, lo
      while a < mid and b < hi do
        if lt(src[b], src[a]) then dst[k], b = src[b], b + 1 else dst[k], a = src[a], a + 1 end
        k = k + 1
      end
      while a < mid do dst[k], a, k = src[a], a + 1, k + 1 end
      while b < hi do dst[k], b, k = src[b], b + 1, k + 1 end
    end
    src, dst, width = dst, src, 2 * width
  end
  for i = 1, n do rawset(t, i, src[i]) end
end

-- The same request gives the same bytes, so nothing a spec sees may depend on addresses (which
-- ASLR moves) or on the order of a hash table (strings hash with a seed per Lua state): pairs
-- visits keys sorted (numbers, then strings, then false and true) and refuses other keys; next
-- is not offered; tostring and string.format's %s give a table's or function's type, not its
-- address, and %p is refused.
local KEY_RANK = { number = 1, string = 2, boolean = 3 }
local function key_before(a, b)
  local ra, rb = KEY_RANK[type(a)], KEY_RANK[type(b)]
  if ra ~= rb then return ra < rb end
  if ra == 3 then return not a and b end
  return a < b
end

local function ordered_pairs(t)
  if type(t) ~= "table" then error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2) end
  local keys = {}
  for k in next, t do
    if not KEY_RANK[type(k)] then
      error("pairs: a key of type " .. type(k) .. " has no fixed order (graph specs iterate number, string and boolean keys)", 2)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys, key_before) -- a Lua comparator: the hook sees its calls
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, rawget(t, k) end
  end, t, nil
end

local function plain(v) return util.opaque(v) and type(v) or v end

local function safe_tostring(v) return tostring(plain(v)) end

-- Whether a format has a %p conversion (a scan, not a pattern: linear in the format).
local function has_p(fmt)
  local i = 1
  while true do
    local at = util.find(fmt, "%", i, true)
    if not at then return false end
    local j = at + 1
    while j <= #fmt and util.find("-+ #0123456789.", fmt:sub(j, j), 1, true) do j = j + 1 end
    if fmt:sub(j, j) == "p" then return true end
    i = j + 1 -- past the conversion ("%%" included)
  end
end

local raw_format = util.format
local function safe_format(fmt, ...)
  if type(fmt) == "string" and has_p(fmt) then
    error("string.format: %p would print an address (graph specs are deterministic)", 2)
  end
  local args = table.pack(...)
  for i = 1, args.n do args[i] = plain(args[i]) end
  return raw_format(fmt, table.unpack(args, 1, args.n))
end
-- Also the format that string values reach as a method, ("%p"):format(t): string values index
-- the state's one string table (kg_lua.c strips it), which the generator shares; the generator
-- formats no tables and no %p.
string.format = safe_format

-- file: the spec the environment is for. Its refusals are the generator's failures (exit 2),
-- also when generator code reads a spec's _ENV handed back as a graph table; they name the
-- spec's innermost line on the stack.
local function sandbox_env(file)
  local function refuse(msg)
    for level = 3, 40 do
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.source == "@" .. file and info.currentline > 0 then util.fail(file .. ":" .. info.currentline .. ": " .. msg) end
    end
    util.fail(file .. ": " .. msg)
  end
  local env = pick(_G, SAFE_GLOBALS)
  env.pairs, env.tostring = ordered_pairs, safe_tostring
  env.math = pick(math, SAFE_MATH)
  env.string = pick(string, SAFE_STRING)
  env.string.format = safe_format
  env.table = pick(table, SAFE_TABLE)
  env.table.sort = stable_sort
  env.unpack = table.unpack
  env._VERSION = _VERSION
  return setmetatable(env, {
    __index = function(_, k) refuse("'" .. util.show(k) .. "' is not available in graph specs (sandbox)") end,
    __newindex = function(_, k) refuse("assignment to global '" .. util.show(k) .. "' (use local)") end,
    __metatable = false,
  })
end

-- Run spec code under the budget; spec errors become user errors that name the file.
local function guarded(chunkname, fn, ...)
  local res = table.pack(host.sandbox_call(chunkname, INSTRUCTION_BUDGET, TIME_BUDGET_MS, MEMORY_CAP, fn, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  local e = res[2]
  if util.is_failure(e) then e = e.msg end -- the generator refused what the spec asked for
  local msg = type(e) == "string" and e or ("(error object is a " .. type(e) .. " value)")
  if msg:sub(1, #chunkname + 1) ~= chunkname .. ":" then msg = chunkname .. ": " .. msg end
  util.fail(msg)
end
spec.guarded = guarded

-- A deep copy of plain data (for functions of the spec: they never get the generator's tables).
local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end
spec.copy = copy

---------------------------------------------------------------------------------------------
-- Declarations

-- Text that appears inside generated comments: printable ASCII that cannot end or open a C
-- comment, continue a line (a backslash) or form a trigraph (??/ is a backslash in C99).
local SUMMARY_MAX = 200
local function is_comment_text(s)
  return type(s) == "string" and #s <= SUMMARY_MAX and not util.find(s, "[^\32-\126]")
    and not util.find(s, "*/", 1, true) and not util.find(s, "/*", 1, true)
    and not util.find(s, "\\", 1, true) and not util.find(s, "??", 1, true)
end

local FIELDS = { "name", "summary", "dims", "attrs", "inputs", "outputs", "saved", "forward", "vjp", "jvp", "validate" }
local ATTR_KINDS = { number = true, int = true, enum = true }
local INIT_HINTS = { normal = true, positive = true, linear = true }

local parse_dim, parse_attr -- below

-- Checks a spec's table and returns the generator's own copy of it. Unknown fields are errors
-- (a misspelled 'valdiate' must not pass silently).
local function declaration(raw, file)
  local function bad(msg) util.fail(file .. ": " .. msg) end
  if type(raw) ~= "table" then bad("a spec must return a graph table (or a list of them), not " .. type(raw)) end
  local function known(fields)
    for k in pairs(raw) do
      local ok = false
      for _, f in ipairs(fields) do if k == f then ok = true end end
      if not ok then bad("unknown field '" .. util.show(k) .. "' (expected " .. table.concat(fields, ", ") .. ")") end
    end
  end
  if not util.is_name(raw.name) then bad("graph name must be a C identifier of at most " .. util.NAME_MAX .. " characters") end
  if raw.alias_of ~= nil then
    known({ "name", "alias_of" })
    if not util.is_name(raw.alias_of) then bad("graph " .. raw.name .. ": alias_of must be a graph name") end
    return { name = raw.name, alias_of = raw.alias_of, file = file }
  end
  known(FIELDS)
  local S = { name = raw.name, file = file, dims = {}, attrs = {}, inputs = {}, outputs = {}, saved = {} }
  local where = file .. ": graph " .. S.name
  local function fail(msg) util.fail(where .. ": " .. msg) end
  local function need(field, ty, optional)
    local v = raw[field]
    if (v ~= nil or not optional) and type(v) ~= ty then fail("field '" .. field .. "' must be a " .. ty) end
    return v
  end
  S.summary = need("summary", "string")
  if not is_comment_text(S.summary) then
    fail("summary must be printable text of at most " .. SUMMARY_MAX .. " characters without */, /*, \\ or ??")
  end
  for _, f in ipairs({ "forward", "vjp", "jvp", "validate" }) do S[f] = need(f, "function", f ~= "forward") end
  local names = {}
  local function fresh(n, what)
    if not util.is_name(n) then fail(what .. " name must be a C identifier of at most " .. util.NAME_MAX .. " characters") end
    if names[n] then fail("duplicate name '" .. n .. "'") end
    if what ~= "dim" and what ~= "attr" then -- a tensor: a parameter of the generated functions
      if not util.is_tensor_name(n) then
        fail(what .. " name '" .. n .. "' must be lower case: a letter, then letters, digits or _")
      end
      if util.c_reserved(n) then fail(what .. " name '" .. n .. "' is reserved in generated C") end
    end
    names[n] = what
  end
  local function list(field, optional)
    local t = need(field, "table", optional) or {}
    for k in pairs(t) do
      if math.type(k) ~= "integer" or k < 1 or k > #t then fail("field '" .. field .. "' must be a list") end
    end
    return t
  end
  for _, d in ipairs(list("dims")) do
    if type(d) ~= "table" then fail("each dim is { name, default, ... }") end
    fresh(d[1], "dim")
    if d.kind ~= nil and d.kind ~= "shape" then fail("dim " .. d[1] .. ": kind must be \"shape\" or absent") end
    if d.min ~= nil and math.type(d.min) ~= "integer" then fail("dim " .. d[1] .. ": min must be an integer") end
    local dim = { d[1], d[2], kind = d.kind, min = d.min }
    parse_dim(where, dim, util.show(d[2])) -- the default must parse like a command-line value
    S.dims[#S.dims + 1] = dim
  end
  for _, a in ipairs(list("attrs", true)) do
    if type(a) ~= "table" then fail("each attr is { name, kind = ..., ... }") end
    fresh(a[1], "attr")
    if not ATTR_KINDS[a.kind] then fail("attr " .. a[1] .. ": kind must be number, int or enum") end
    local attr = { a[1], kind = a.kind }
    if a.kind == "number" then
      if a.min ~= nil and type(a.min) ~= "number" then fail("attr " .. a[1] .. ": min must be a number") end
      attr.min = a.min
    elseif a.values ~= nil or a.kind == "enum" then
      if type(a.values) ~= "table" or #a.values == 0 then fail("attr " .. a[1] .. ": values must be a non-empty list") end
      attr.values = {}
      for i, v in ipairs(a.values) do
        if a.kind == "enum" and not util.is_name(v) then fail("attr " .. a[1] .. ": enum values must be identifiers") end
        if a.kind == "int" and math.type(v) ~= "integer" then fail("attr " .. a[1] .. ": int values must be integers") end
        attr.values[i] = v
      end
    end
    for _, key in ipairs({ "default", "torchlean", "pytorch" }) do
      local v = a[key]
      if v ~= nil then -- kept as parsed: the raw text (" 0x1P-3\n", say) reached the banner
        if not (a.kind == "number" and v == "dtype_eps") then v = parse_attr(where, attr, util.show(v)) end
        attr[key] = v
      end
    end
    if attr.default == nil and (attr.torchlean == nil or attr.pytorch == nil) then
      fail("attr " .. a[1] .. ": needs a default, or both torchlean and pytorch defaults")
    end
    S.attrs[#S.attrs + 1] = attr
  end
  for _, i in ipairs(list("inputs")) do
    if type(i) ~= "table" then fail("each input is { name, dim, ... }") end
    fresh(i[1], "input")
    local input = { i[1], init = i.init or "normal", when = i.when }
    if not INIT_HINTS[input.init] then fail("input " .. i[1] .. ": init must be \"normal\", \"positive\" or \"linear\"") end
    if i.when ~= nil and type(i.when) ~= "function" then fail("input " .. i[1] .. ": when must be a function") end
    for k = 2, #i do
      if names[i[k]] ~= "dim" then fail("input " .. i[1] .. ": unknown dim '" .. util.show(i[k]) .. "'") end
      input[k] = i[k]
    end
    S.inputs[#S.inputs + 1] = input
  end
  for _, o in ipairs(list("outputs")) do
    fresh(o, "output")
    S.outputs[#S.outputs + 1] = o
  end
  if #S.outputs == 0 then fail("no outputs") end
  for _, s in ipairs(list("saved", true)) do
    if not util.is_name(s) then fail("saved names must be identifiers") end
    fresh(s, "saved")
    S.saved[#S.saved + 1] = s
  end
  return S
end

-- Loads one spec file (text) and returns its graph declarations (the generator's copies).
-- precompiled: the text is a built-in spec that gen/embed.c compiled; a user's spec is always
-- loaded as text.
function spec.load_text(text, file, precompiled)
  local chunk, err = load(text, "@" .. file, precompiled and "b" or "t", sandbox_env(file))
  if not chunk then
    err = util.match(tostring(err), "^[^\n]*") -- the parser's "C stack overflow" brings a traceback
    if err:sub(1, #file + 1) ~= file .. ":" then err = file .. ": " .. err end
    util.fail(err)
  end
  local raw = guarded(file, chunk)
  local list = {}
  if type(raw) == "table" and raw[1] ~= nil then
    for k = 1, #raw do list[k] = declaration(raw[k], file) end
  else
    list[1] = declaration(raw, file)
  end
  local byname = {} -- g.call finds the graphs of the same file first
  for _, S in ipairs(list) do
    if byname[S.name] then util.fail(file .. ": graph '" .. S.name .. "' defined twice") end
    byname[S.name] = S
    S.siblings = byname
  end
  return list
end

-- The graphs of one file of graphs/ (embedded, or from disk in developer mode), loaded once.
local files = {}
local function builtin_file(path)
  if not files[path] then
    local text, precompiled = host.resource(path)
    files[path] = spec.load_text(text, path, precompiled)
  end
  return files[path]
end

-- All graphs: the built-in graphs/.
local registry
function spec.registry()
  if registry then return registry end
  registry = { byname = {}, names = {} }
  for _, path in ipairs(host.resources("graphs/")) do
    if util.match(path, "%.lua$") then
      for _, s in ipairs(builtin_file(path)) do
        if registry.byname[s.name] then util.fail(path .. ": graph '" .. s.name .. "' defined twice") end
        registry.byname[s.name] = s
        registry.names[#registry.names + 1] = s.name
      end
    end
  end
  table.sort(registry.names)
  return registry
end

-- A built-in graph by name, or nil. The embedded index (gen/embed.c) names the file that
-- defines it, and only that file loads; without an index (developer mode), every file.
local function builtin(name)
  local path = not registry and host.graph_file(name)
  if path then
    for _, s in ipairs(builtin_file(path)) do if s.name == name then return s end end
  end
  return spec.registry().byname[name]
end

-- find: the graph of a name (a function)
local function resolve_alias(S, find)
  if not S.alias_of then return S end
  local target = find(S.alias_of)
  if not target or target.alias_of then util.fail(S.file .. ": alias of unknown graph '" .. S.alias_of .. "'") end
  return setmetatable({ name = S.name, alias_of = S.alias_of }, { __index = target })
end

-- A graph by name, or a spec file given by path (anything with a '/' or ending in .lua).
function spec.find(name)
  if util.find(name, "/", 1, true) or util.match(name, "%.lua$") then
    local text, err = host.read_file(name)
    if not text then util.fail(err) end
    local S = spec.load_text(text, name)[1]
    return resolve_alias(S, function(n) return S.siblings[n] end)
  end
  local S = builtin(name)
  if not S then
    util.fail("unknown graph '" .. name .. "' (known: " .. table.concat(spec.registry().names, ", ") .. ")")
  end
  return resolve_alias(S, builtin)
end

-- The graph a spec's g.call names (an identifier): a graph of the caller's own file, or a
-- built-in graph (never a path: a spec may not read files).
function spec.find_callee(caller, name)
  local S = caller.siblings and caller.siblings[name]
  if S then return resolve_alias(S, function(n) return caller.siblings[n] end) end
  return spec.find(name)
end

---------------------------------------------------------------------------------------------
-- Binding NAME=VALUE parameters

local DTYPE_EPS = { f32 = 2.0 ^ -23, f64 = 2.0 ^ -52 }
local DIM_MAX = 100000000

local function parse_int(s)
  if not util.match(s, "^%d+$") or #s > 12 then return nil end
  return math.tointeger(tonumber(s))
end

function parse_dim(graph, d, s)
  local what = graph .. ": dim " .. d[1] .. "=" .. s
  if d.kind == "shape" then
    local shape = {}
    for part in util.gmatch(s .. "x", "([^x]*)x") do
      local v = parse_int(part)
      if not v or v < 1 or v > DIM_MAX then util.fail(what .. ": expected extents 1.." .. DIM_MAX .. " joined by 'x', e.g. 2x3x4") end
      shape[#shape + 1] = v
      if #shape > 8 then util.fail(what .. ": at most 8 axes") end
    end
    util.count(shape) -- checked product
    return shape
  end
  local v = parse_int(s)
  local min = d.min or 1
  if not v or v < min then util.fail(what .. ": expected an integer >= " .. min) end
  if v > DIM_MAX then util.fail(what .. ": too large (at most " .. DIM_MAX .. ")") end
  return v
end

function parse_attr(graph, a, s)
  local what = graph .. ": attr " .. a[1] .. "=" .. s
  if a.kind == "enum" then
    for _, v in ipairs(a.values) do if v == s then return s end end
    util.fail(what .. ": expected one of " .. table.concat(a.values, ", "))
  end
  local v = tonumber(s)
  if not v or v ~= v or v == math.huge or v == -math.huge then util.fail(what .. ": expected a finite number") end
  if a.kind == "int" then
    v = math.tointeger(v)
    local ok = v ~= nil and a.values == nil
    for _, x in ipairs(a.values or {}) do if x == v then ok = true end end
    if not ok and not a.values then util.fail(what .. ": expected an integer") end
    if not ok then
      local vals = {}
      for i, x in ipairs(a.values) do vals[i] = tostring(x) end
      util.fail(what .. ": expected one of " .. table.concat(vals, ", "))
    end
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
    local k, v = util.match(p, "^([%a_][%w_]*)=(.+)$")
    if not k then util.fail(S.name .. ": bad parameter '" .. p .. "' (expected NAME=VALUE)") end
    local d = decl[k]
    if not d then
      local known = {}
      for _, x in ipairs(S.dims) do known[#known + 1] = x[1] end
      for _, x in ipairs(S.attrs) do known[#known + 1] = x[1] end
      util.fail(S.name .. ": unknown parameter '" .. k .. "' (known: " .. table.concat(known, ", ") .. ")")
    end
    if dims[k] ~= nil or attrs[k] ~= nil then util.fail(S.name .. ": parameter '" .. k .. "' given twice") end
    if d[2] == "dim" then dims[k] = parse_dim(S.name, d[1], v) else attrs[k] = parse_attr(S.name, d[1], v) end
  end
  for _, d in ipairs(S.dims) do
    if dims[d[1]] == nil then dims[d[1]] = parse_dim(S.name, d, util.show(d[2])) end
  end
  for _, a in ipairs(S.attrs) do
    if attrs[a[1]] == nil then attrs[a[1]] = spec.attr_default(a, semantics, dtype) end
  end
  if S.validate then
    local msg = guarded(S.file, S.validate, copy(dims), copy(attrs))
    if msg ~= nil then
      if type(msg) ~= "string" then util.fail(S.file .. ": validate must return nil or a message") end
      util.fail(S.name .. ": " .. msg)
    end
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
    if not i.when or guarded(S.file, i.when, copy(attrs)) then list[#list + 1] = i end
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
  for _, i in ipairs(spec.active_inputs(S, ctx.attrs)) do b.set(i[1], inputs[i[1]]) end
  guarded(S.file, S.forward, b.g, b.values)
  local outs = {}
  for _, o in ipairs(S.outputs) do
    local n = b.get(o)
    if not n then util.fail(S.file .. ": graph " .. S.name .. ": forward did not define output '" .. o .. "'") end
    outs[o] = n
  end
  -- what a backward may read instead of recomputing: the spec's saved values, after those of
  -- the graphs it called (named <callee>_<value>)
  for _, s in ipairs(S.saved) do
    local n = b.get(s)
    if not n then util.fail(S.file .. ": graph " .. S.name .. ": saved value '" .. s .. "' is not defined by forward") end
    b.saved[#b.saved + 1] = { name = util.gsub(b.prefix .. s, "%.", "_"), node = n }
  end
  return outs, b
end

-- The forward graph of S at bound dims/attrs: inputs, the node chain, outputs. leaf(G, name,
-- shape), when given, may return the node that stands for an input instead of an argument
-- (pipeline: a baked input's table).
function spec.forward_graph(S, ctx, leaf)
  local G = ir.new()
  local inputs = {}
  for _, i in ipairs(spec.active_inputs(S, ctx.attrs)) do
    local shape = spec.input_shape(i, ctx.dims)
    inputs[i[1]] = leaf and leaf(G, i[1], shape) or G:input(i[1], shape, "input")
  end
  local outs, b = spec.run_forward(S, G, ctx, inputs)
  for _, o in ipairs(S.outputs) do G.outputs[#G.outputs + 1] = { name = o, role = "output", node = outs[o] } end
  G.saved = b.saved
  return G, b
end

return spec
