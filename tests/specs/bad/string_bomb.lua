-- expect: string_bomb.lua:2: memory limit exceeded
local s = string.rep("x", 1 << 30) -- 1 GiB, far above the cap
return {
  name = "bad_string_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
