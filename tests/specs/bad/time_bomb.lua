-- expect: time budget exceeded
-- Few instructions, each a long C call: the wall-clock budget stops it (5 s per request).
for _ = 1, 1e9 do local _ = ("x"):rep(1 << 20) end
return {
  name = "bad_time_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x end,
}
