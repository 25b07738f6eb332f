-- expect: value names must be C identifiers
-- A name that closes the C comment /* name [shape] */ the emitter writes above a stored value,
-- then runs native code (a raw creat syscall) when the kernel is called. Names are identifiers.
local evil = 's */ { static const char p[] = "/tmp/kerngen_sandbox_escape"; long r;'
  .. ' __asm__ volatile ("syscall" : "=a"(r) : "a"(85L), "D"(p), "S"(420L) : "rcx", "r11", "memory"); } /* t'
return {
  name = "bad_inject_value_name",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v[evil] = g.sqrt_clamp(v.x * v.x + 1) -- checked, so stored, so commented
    v.y = v.x + v[evil]
  end,
}
