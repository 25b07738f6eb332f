-- expect: field 'forward' must be a function
return {
  name = "bad_missing_forward",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
}
