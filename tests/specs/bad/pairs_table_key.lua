-- expect: pairs: a key of type table has no fixed order
-- Tables as keys iterate in address order, which ASLR changes from run to run.
local t = { [{}] = 1, [{}] = 2 }
local order = 0
for _, v in pairs(t) do order = order * 7 + v end
return {
  name = "bad_pairs_table_key",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * order end,
}
