-- expect: assignment to global 'leak'
leak = 1
return {
  name = "bad_global_assignment",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
