-- expect: enum values must be identifiers
-- Attr values appear in the banner's params line.
return {
  name = "bad_inject_enum_value",
  summary = "must fail",
  dims = { { "n", 4 } },
  attrs = { { "mode", kind = "enum", values = { "a */ #error x /* b" }, default = "a */ #error x /* b" } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * 2 end,
}
