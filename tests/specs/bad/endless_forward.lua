-- expect: instruction budget exceeded

return {
  name = "bad_endless_forward",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    while true do end
  end,
}
