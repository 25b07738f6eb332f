-- util: small helpers shared by the passes: user errors, pattern matching, deterministic
-- serialization, shapes with checked sizes, and C literals that round-trip.

local host = require("kg_host")

local util = {}

-- string.format as Lua has it, for the generator's own text. spec.lua replaces the state's
-- string.format with a checked one for spec code (no %p; opaque values print as their type),
-- which costs a scan of the format and a copy of the arguments per call: 5% of generating
-- LayerNorm 8x64's forward went there.
util.format = string.format

-- A user error (bad spec, dims, attrs or options): the C host prints msg and exits 2.
-- Any other Lua error is a generator bug and is reported with a traceback. The metatable
-- marks failures the generator raised; a spec cannot make one (it has no setmetatable).
local Failure = { __tostring = function(e) return e.msg end }
function util.fail(msg) error(setmetatable({ msg = msg }, Failure), 0) end

function util.is_failure(e) return getmetatable(e) == Failure end

-- Lua's pattern functions, which the state's string library no longer has: a pattern can
-- backtrack for hours inside one C call, where no instruction hook fires, so spec code gets
-- none of them (kg_lua.c). The generator's own patterns are short and fixed.
util.find, util.match, util.gmatch, util.gsub = host.pattern.find, host.pattern.match,
  host.pattern.gmatch, host.pattern.gsub

-- Names that reach generated files (C identifiers of values, inputs, dims, attrs, graphs).
util.NAME_MAX = 64
function util.is_name(s)
  return type(s) == "string" and #s <= util.NAME_MAX and util.match(s, "^[%a_][%w_]*$") ~= nil
end

-- Names of a spec's tensors (inputs, outputs, saved values), which generated C uses as the
-- names of parameters: lower case (no name is then one of the C library's upper-case macros,
-- HUGE_VAL or INFINITY, and no two names give the header one size macro, x and X), and not one
-- of the identifiers below.
function util.is_tensor_name(s)
  return type(s) == "string" and #s <= util.NAME_MAX and util.match(s, "^[a-z][a-z0-9_]*$") ~= nil
end

-- Identifiers a tensor may not take: C's keywords (C99 to C23) and C++'s (the headers are
-- C++ too), the names generated code declares itself (emit_c, block, lower: loop variables
-- i0, r1, i0c, r0t, jb and l, locals t0 and h1, accumulators acc and acc0, bad, the workspace
-- ws and ws_1, helpers kg_*), the library functions kernels call, and lower-case macros of the
-- C headers and of gcc in its GNU modes (a parameter named so would be a different token).
local RESERVED = {}
for k in util.gmatch([[
  auto break case char const continue default do double else enum extern float for goto if inline
  int long register restrict return short signed sizeof static struct switch typedef union
  unsigned void volatile while alignas alignof bool constexpr false nullptr static_assert
  thread_local true typeof typeof_unqual and and_eq asm bitand bitor catch char8_t char16_t
  char32_t class compl concept consteval constinit const_cast co_await co_return co_yield
  decltype delete dynamic_cast explicit export friend mutable namespace new noexcept not not_eq
  operator or or_eq private protected public reinterpret_cast requires static_cast template this
  throw try typeid typename using virtual wchar_t xor xor_eq
  ws bad acc l jb sqrt sqrtf fma fmaf memset errno math_errhandling assert unix linux i386]], "%S+") do
  RESERVED[k] = true
end
function util.c_reserved(name)
  return RESERVED[name] or util.match(name, "^[irht]%d+%l*$") ~= nil or util.match(name, "^acc%d+$") ~= nil
    or util.match(name, "^ws_%d+$") ~= nil or util.match(name, "^kg_") ~= nil
end

-- Values whose tostring is an address (which ASLR moves: the same request must give the same
-- text), and a value a spec gave as a message shows it: by its type.
function util.opaque(v)
  local t = type(v)
  return t == "table" or t == "function" or t == "thread" or t == "userdata"
end
function util.show(v) return util.opaque(v) and "(a " .. type(v) .. ")" or tostring(v) end

-- Deterministic text of a value: keys sorted, numbers with 17 significant digits.
function util.serialize(v)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return util.format("%.17g", v)
  elseif t == "string" then return util.format("%q", v)
  elseif t == "boolean" or t == "nil" then return tostring(v)
  elseif t == "table" then
    local n, count = #v, 0
    for _ in pairs(v) do count = count + 1 end
    if n > 0 and count == n then -- a sequence, no other keys: {2,3}
      local parts = {}
      for i = 1, n do parts[i] = util.serialize(v[i]) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. util.serialize(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("cannot serialize a " .. t)
end

function util.shape_str(s)
  local parts = {}
  for i, e in ipairs(s) do parts[i] = tostring(e) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

function util.same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- Element count of a shape. Products are checked as they are formed (Lua integers wrap around
-- silently): no shape may exceed 2^53 elements, whether or not it is ever stored. The limit for
-- stored tensors is util.MAX_ELEMENTS (pipeline checks every argument and workspace).
util.MAX_ELEMENTS = 2147483647 -- kernels index with int
local MAX_SHAPE = 1 << 53
util.MAX_RANK = 8 -- axes of a tensor (kg_arg.shape has 8; a reshape to 10,000 axes took the passes 25 s and 2 GB)
function util.count(shape)
  if #shape > util.MAX_RANK then util.fail("a tensor of " .. #shape .. " axes (at most " .. util.MAX_RANK .. ")") end
  local n = 1
  for _, e in ipairs(shape) do
    if math.type(e) ~= "integer" or e < 0 then error("shape extent " .. tostring(e) .. " is not a count") end
    if e ~= 0 and n > MAX_SHAPE // e then util.fail("shape " .. util.shape_str(shape) .. " has more than 2^53 elements") end
    n = n * e
  end
  return n
end

-- Row-major strides.
function util.strides(shape)
  local s, acc = {}, 1
  for i = #shape, 1, -1 do s[i] = acc; acc = acc * shape[i] end
  return s
end

-- A C floating literal that converts back to exactly v in the kernel's type:
-- %.17g for double, %.9g with an f suffix for float (v is first rounded to float by the C compiler).
local literals = { f32 = {}, f64 = {} } -- v -> text, per dtype (not zero: 0 and -0 share a key)
util.FLT_MAX = 3.4028234663852886e38 -- the largest float
function util.c_literal(v, dtype)
  local known = literals[dtype]
  local s = known and known[v]
  if s then return s end
  if v ~= v or v == math.huge or v == -math.huge then error("non-finite constant " .. tostring(v)) end
  if dtype == "f32" and (v > util.FLT_MAX or v < -util.FLT_MAX) then
    util.fail("the constant " .. util.format("%.17g", v) .. " is beyond float's range: in an f32 kernel it would be inf")
  end
  if dtype == "f32" then s = util.format("%.9g", v) else s = util.format("%.17g", v) end
  if not util.find(s, "[%.eEn]") then s = s .. ".0" end
  if dtype == "f32" then s = s .. "f" end
  if known and v ~= 0 then known[v] = s end
  return s
end

-- The literals of v[first..last] joined by ", ", each exactly util.c_literal(v[i], dtype), made
-- fast for tables of millions of values (baked inputs): runs of up to LITERAL_RUN non-integral
-- finite values go through one util.format. Such a value never prints as an integer (%.9g
-- and %.17g round-trip, and a string without '.' or an exponent would read back as an integer),
-- so it needs no ".0"; integral and non-finite values take util.c_literal itself.
local LITERAL_RUN = 8
local run_formats = { f32 = {}, f64 = {} }
for n = 1, LITERAL_RUN do
  run_formats.f32[n] = string.rep("%.9gf", n, ", ")
  run_formats.f64[n] = string.rep("%.17g", n, ", ")
end
function util.c_literals(v, first, last, dtype)
  local parts, formats, floor, i = {}, run_formats[dtype], math.floor, first
  while i <= last do
    local j = i
    while j <= last and j < i + LITERAL_RUN do
      local x = v[j]
      if x == floor(x) or x ~= x then break end -- integral, infinite or NaN
      j = j + 1
    end
    if j > i then
      parts[#parts + 1] = util.format(formats[j - i], table.unpack(v, i, j - 1))
      i = j
    else
      parts[#parts + 1] = util.c_literal(v[i], dtype)
      i = i + 1
    end
  end
  return table.concat(parts, ", ")
end

-- Format a double for messages and banners (shortest that round-trips).
function util.num_str(v)
  if type(v) ~= "number" or math.type(v) == "integer" then return tostring(v) end
  for p = 1, 17 do
    local s = util.format("%." .. p .. "g", v)
    if tonumber(s) == v then return s end
  end
  return util.format("%.17g", v)
end

return util
