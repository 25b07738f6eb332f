-- expect: 'dofile' is not available
dofile("/etc/passwd")
return {
  name = "bad_dofile",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
