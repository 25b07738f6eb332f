-- expect: no value named '(a table)'
-- Messages show a spec's table or function by its type: its address (ASLR) changed the text of
-- the same request's error from run to run.
return {
  name = "bad_address_in_message",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v[{}] end,
}
