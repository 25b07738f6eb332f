-- expect: assigned_twice.lua:10: value 'y' assigned twice
return {
  name = "bad_assigned_twice",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
    v.y = v.x * 2
  end,
}
