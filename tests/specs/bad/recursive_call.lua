-- expect: g.call nests deeper than 8 graphs
return {
  name = "bad_recursive_call",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = g.call("bad_recursive_call", { x = v.x }).y end,
}
