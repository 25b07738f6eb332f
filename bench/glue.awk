# glue.awk: reads one generated header and writes the C glue of bench/glue.h for it.
#   awk -v k=INDEX -v prefix=NAME -v table=FILE -v entry='"op", "name", ...' -f glue.awk NAME.h
# Every `int PREFIX_PASS(...);` prototype becomes a caller taking void pointers and an argument
# table; each count is the header's size macro (NAME_ARG_SIZE, NAME_PASS_WS_SIZE) or, if the
# header has none, the product of the dims its comment gives ("   x   [8, 64] input x").
# Appends the kernel's line of glue_kernels[] to FILE.
function fail(msg) { printf "glue.awk: %s: %s\n", FILENAME, msg > "/dev/stderr"; failed = 1; exit 1 }
/^#define [A-Z0-9_]+ / { macro[$2] = 1 }
/^ +[a-z_][a-z0-9_]* +\[[0-9, ]*\]/ {
    n = 1; dims = $0; sub(/^[^[]*\[/, "", dims); sub(/\].*/, "", dims)
    cnt = split(dims, d, /, */)
    for (i = 1; i <= cnt; i++) if (d[i] != "") n *= d[i]
    doc[$1] = n
}
$0 ~ "^int " prefix "_[a-z0-9_]+\\(.*\\);$" {
    fn = $0; sub("^int " prefix "_", "", fn); sub(/\(.*/, "", fn)
    plist = $0; sub(/^[^(]*\(/, "", plist); sub(/\);$/, "", plist)
    np = split(plist, p, /, /)
    f = nfn++
    fname[f] = fn
    call = ""; args = ""
    for (i = 1; i <= np; i++) {
        nm = p[i]; sub(/.*[ *]/, "", nm)
        writes = (p[i] ~ /^const /) ? 0 : 1
        m = (nm == "ws") ? toupper(prefix "_" fn "_WS_SIZE") : toupper(prefix "_" nm "_SIZE")
        if (m in macro) count = m
        else if (nm in doc) count = doc[nm]
        else fail("no size for argument " nm " of " prefix "_" fn)
        call = call (i > 1 ? ", " : "") "a[" (i - 1) "]"
        args = args sprintf("    {\"%s\", %s, %d},\n", nm, count, writes)
    }
    printf "static int k%d_%s(void *const *a)\n{\n    return %s_%s(%s);\n}\n", k, fn, prefix, fn, call
    printf "static const glue_arg k%d_%s_args[] = {\n%s};\n", k, fn, args
    nargs[f] = np
    split("", doc)
}
END {
    if (failed) exit 1
    if (nfn == 0) { printf "glue.awk: %s: no function of %s\n", FILENAME, prefix > "/dev/stderr"; exit 1 }
    printf "static const glue_fn k%d_fns[] = {\n", k
    for (f = 0; f < nfn; f++)
        printf "    {\"%s\", k%d_%s, %d, k%d_%s_args},\n", fname[f], k, fname[f], nargs[f], k, fname[f]
    printf "};\n\n"
    printf "    {%s, %d, k%d_fns},\n", entry, nfn, k >> table
}
