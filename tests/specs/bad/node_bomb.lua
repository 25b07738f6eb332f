-- expect: the graph has more than 4000 nodes
-- A chain of exps: the passes after the spec take time in proportion to the graph (a chain of
-- 5,000 took 31 s before two quadratic steps of fuse became linear), so graphs are bounded
-- (at 40x the largest built-in graph's 95 nodes).
return {
  name = "bad_node_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    local t = v.x
    for _ = 1, 4001 do t = g.exp(t) end
    v.y = t
  end,
}
