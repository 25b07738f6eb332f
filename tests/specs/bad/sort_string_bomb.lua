-- expect: table.sort: strings of more than 1048576 bytes in all
-- Within the element bound, long equal strings made each compare walk 64 KiB (strcoll, a call
-- per NUL byte), all inside one C call: minutes unseen by the hook. The strings' bytes are bounded.
local s = string.rep("\0", 64 * 1024)
local t = {}
for i = 1, 100000 do t[i] = s end
table.sort(t)
return {
  name = "bad_sort_string_bomb",
  summary = "must fail",
  dims = { { "n", 4 } },
  inputs = { { "x", "n" } },
  outputs = { "y" },
  forward = function(g, v) v.y = v.x * 2 end,
}
