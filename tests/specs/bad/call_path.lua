-- expect: g.call: '/etc/passwd' is not a graph name
-- A spec may call graphs, not read files.
return {
  name = "bad_call_path",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = g.call("/etc/passwd", { x = v.x }).y end,
}
