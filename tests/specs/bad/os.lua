-- expect: 'os' is not available
os.execute("touch /tmp/kerngen_sandbox_escape")
return {
  name = "bad_os",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v)
    v.y = v.x
  end,
}
