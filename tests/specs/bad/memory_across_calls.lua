-- expect: memory limit exceeded (64 MiB per request)
-- The memory cap is per request, not per call: this kept 30 MiB per input's `when` in an
-- upvalue, each call capped at what the heap held plus 64 MiB, and reached 1.5 GB.
local keep = {}
local function hog()
  keep[#keep + 1] = string.rep("x", 30 * 1024 * 1024) .. #keep
  return true
end
local inputs = {}
for i = 1, 20 do inputs[i] = { "x" .. i, "n", when = hog } end
return {
  name = "bad_memory_across_calls",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = inputs,
  outputs = { "y" },
  forward = function(g, v) v.y = v.x1 * 2 end,
}
