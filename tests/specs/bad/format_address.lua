-- expect: string.format: %p would print an address
-- An address (ASLR) baked into a constant: the same request gave other bytes on every run.
local a = #string.format("%p", {})
return {
  name = "bad_format_address",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * a end,
}
