-- expect: attr_typo.lua:8: g.attr has no 'epss' (g.attr: eps)
-- A misspelled attr names itself and the spec line, not "argument is not a tensor".
return {
  name = "bad_attr_typo", summary = "must fail",
  dims = { { "n", 4 } }, attrs = { { "eps", kind = "number", default = 1e-5 } },
  inputs = { { "x", "n" } }, outputs = { "y" },
  forward = function(g, v)
    v.y = v.x + g.attr.epss
  end,
}
