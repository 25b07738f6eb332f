-- expect: saved name 'acc' is reserved in generated C
-- Saved values become arguments of vjp_saved; their names were not checked like the others.
return {
  name = "bad_reserved_saved",
  summary = "must fail",
  dims = { { "n", 64 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  saved = { "acc" },
  forward = function(g, v)
    v.acc = g.exp(v.x)
    v.y = v.acc * v.x
  end,
}
