-- expect: instruction budget exceeded
while true do end
return {
  name = "bad_endless_loop",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
