-- expect: input name 'acc0' is reserved in generated C
-- acc0 is the accumulator array a kernel declares when two reductions share a loop: as an
-- input it was shadowed inside that loop, and the kernel read its stack past the array.
return {
  name = "bad_reserved_local",
  summary = "must fail",
  dims = { { "n", 64 } },
  inputs = { { "acc0", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.acc0 - g.mean(v.acc0) end,
}
