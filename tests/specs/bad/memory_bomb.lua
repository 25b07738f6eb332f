-- expect: memory_bomb.lua:2: memory limit exceeded
local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
return {
  name = "bad_memory_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
