-- expect: table.sort: more than 100000 elements
-- table.sort without a comparator runs in C, unseen by the hook: its input is bounded.
local t = {}
for i = 1, 200000 do t[i] = -i end
table.sort(t)
return {
  name = "bad_sort_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
