-- expect: summary must be printable text
-- The summary goes into the banner comment of every generated file.
return {
  name = "bad_inject_summary",
  summary = "ends the banner */ #error injected /* here",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * 2 end,
}
