-- expect: output name 'new' is reserved in generated C
-- The header is C++ too: a parameter named new does not compile there.
return {
  name = "bad_cxx_keyword",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "new" },
  forward = function(g, v) v.new = v.x * 2 end,
}
