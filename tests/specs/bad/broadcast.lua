-- expect: broadcast.lua:10: cannot broadcast [4] with [2, 2]

return {
  name = "bad_broadcast",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x + g.reshape(v.x, { 2, 2 })
  end,
}
