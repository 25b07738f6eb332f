-- expect: 'collectgarbage' is not available
collectgarbage("stop")
return {
  name = "bad_collectgarbage",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
