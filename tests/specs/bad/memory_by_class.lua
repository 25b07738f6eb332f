-- expect: memory_by_class.lua:9: memory limit exceeded
-- Memory held one block size after another, 20 MiB at a time: a freed block serves only its
-- own size class in the generator's heap (runtime/kg_heap.c), so each size took new chunks and
-- the process grew to 445 MB, under the cap on what is held; the cap now bounds the chunks too.
local size = 4096
for round = 1, 16 do
  local t = {}
  for i = 1, (20 << 20) // size do
    t[i] = string.rep("x", size - 40) .. i
  end
  t = nil
  size = size * 5 // 4
end
return {
  name = "bad_memory_by_class",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
