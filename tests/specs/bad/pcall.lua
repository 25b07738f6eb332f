-- expect: 'pcall' is not available
pcall(function() end)
return {
  name = "bad_pcall",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
