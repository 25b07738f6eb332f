/*
 * test_const.c - baked inputs (kg_request.consts; kerngen --const is tested in test_cli.c): an
 * input given as data is compiled into the kernel as a static const table, and the kernel
 * computes what the unbaked one computes when called with that data.
 *
 *   jit_matches_unbaked   seq_ffn with w1 and w2 baked gives, in every pass, the bits of the
 *                         unbaked kernel called with the same w1 and w2 (in the jvp their tangents
 *                         zero), f32 and f64, unroll auto and none. The data holds values that
 *                         print as integers, -0, a subnormal and values of every sign and size.
 *   aot_matches_jit       the emitted .c, compiled by gcc (-std=c99 with -Wall -Wextra -Wpedantic
 *                         -Werror, -O3 -march=native) into a shared object, computes the JIT's bits
 *                         in every pass.
 *   cortex_m4_flash       for a Cortex-M4F (arm-none-eabi-gcc -O0 -Werror) the tables are
 *                         .rodata (flash): the object has no .data and no .bss.
 *   arguments_and_header  w1 and w2 are no argument of any pass and the vjp has no w1_grad; the
 *                         header has no size macro, argument, gradient or tangent of them; the .c
 *                         defines each table once with its element count; the banner says
 *                         const=w1,w2 and the tables' bytes (kg_table_bytes).
 *   closed_forms          layernorm with gamma baked: the closed-form vjp and jvp give the bits of
 *                         the derived ones.
 *   library_errors        an unknown input, an input given twice, a wrong count, a NaN, a
 *                         conditional input that is off, NULL data or name: KG_EINPUT with a
 *                         message naming the input, and no kernel; kg_check refuses baked inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <math.h>

#include "kg_aot.h"
#include "kg_check.h"

/* big enough for blocked matrix products (block.MIN_WORK) and row form reduces */
static const char *const FFN_PARAMS[] = {"seq=4", "dmodel=16", "dff=64"};
enum { SEQ = 4, DMODEL = 16, DFF = 64, NW = DMODEL * DFF };

/* The baked weights: normal-ish values, then at fixed places values that test the literals. */
static void *weights(const char *name, size_t es)
{
    static const double special[] = {0.0, -0.0, 1.0, -2.0, 12345.0, 0.1, -65536.5, 1e-3, 3.0e5};
    uint64_t seed = seed_of(name);
    unsigned char *buf = malloc(NW * es);
    assert_non_null(buf);
    for (size_t i = 0; i < NW; i++) {
        double v = 0.25 * lcg_normalish(&seed);
        if (i % 97 < sizeof special / sizeof special[0])
            v = special[i % 97];
        if (i == 500) /* a subnormal of the dtype */
            v = es == 4 ? 1e-40 : 4e-320;
        if (es == 4) {
            float f = (float)v;
            memcpy(buf + i * es, &f, es);
        } else {
            memcpy(buf + i * es, &v, es);
        }
    }
    return buf;
}

static kg_request ffn_request(const char *dtype, const char *unroll, const kg_const *consts, int n)
{
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = "seq_ffn";
    r.params = FFN_PARAMS;
    r.nparams = 3;
    r.dtype = dtype;
    r.unroll = unroll;
    r.consts = consts;
    r.nconsts = n;
    r.train = "b1,b2"; /* the firmware case: matrices in flash, biases trained */
    r.optimizer = "adam";
    return r;
}

static kg_kernel *build(const kg_request *r)
{
    char *problem = NULL;
    kg_kernel *k = generate_compiled(r, &problem);
    if (!k)
        fail_msg("%s", problem);
    return k;
}

/* Buffer of argument FILE (e.g. "w1.tangent") in s, or NULL. */
static void *arg_buf(const kg_kernel *k, kg_pass p, const argset *s, const char *file)
{
    int i = kg_arg_index(k, p, file);
    return i >= 0 && i < s->n ? s->args[i] : NULL;
}

/* Every output of the baked kernel B equals the same-named output of the unbaked U, bit for
   bit; U's only other outputs are w1's and w2's gradients. NULL or the first difference. */
static char *compare_baked(const kg_kernel *u, const kg_kernel *b, kg_pass p, const void *w1, const void *w2)
{
    size_t es = kg_elem_size(u);
    argset ua, ba;
    argset_make(&ua, u, p);
    argset_make(&ba, b, p);
    memcpy(arg_buf(u, p, &ua, "w1"), w1, NW * es);
    memcpy(arg_buf(u, p, &ua, "w2"), w2, NW * es);
    if (p == KG_JVP) {
        memset(arg_buf(u, p, &ua, "w1.tangent"), 0, NW * es);
        memset(arg_buf(u, p, &ua, "w2.tangent"), 0, NW * es);
    }
    char *diff = NULL;
    int rcu = kg_call(u, p, ua.args, ua.n + 1), rcb = kg_call(b, p, ba.args, ba.n + 1);
    if (rcu != 0 || rcb != 0)
        diff = xprintf("%s: return codes %d (unbaked) and %d (baked)", pass_names(p), rcu, rcb);
    for (int i = 0; !diff && i < ba.n; i++) {
        const kg_arg *a = kg_arg_at(b, p, i);
        int j = kg_arg_index(u, p, a->file);
        if (!kg_role_writes(a->role))
            continue;
        if (j < 0) {
            diff = xprintf("%s: the baked kernel writes %s, which the unbaked one does not", pass_names(p), a->file);
            break;
        }
        for (size_t e = 0; e < a->count; e++)
            if (memcmp((char *)ua.args[j] + e * es, (char *)ba.args[i] + e * es, es) != 0) {
                diff = xprintf("%s: %s[%zu]: unbaked %.17g, baked %.17g", pass_names(p), a->cname, e,
                               elem_value(ua.args[j], e, es), elem_value(ba.args[i], e, es));
                break;
            }
    }
    /* Every output but the weights' gradients, and the saved values only the weights' gradients
       read (the hidden activation: forward_train saves what vjp_saved reads). */
    for (int j = 0; !diff && j < ua.n; j++) {
        const kg_arg *a = kg_arg_at(u, p, j);
        if (kg_role_writes(a->role) && kg_arg_index(b, p, a->file) < 0 && strcmp(a->file, "w1.grad") != 0 &&
            strcmp(a->file, "w2.grad") != 0 && !(a->role == KG_ROLE_SAVE && strcmp(a->file, "hidden.saved") == 0))
            diff = xprintf("%s: the baked kernel lacks the output %s", pass_names(p), a->file);
    }
    argset_free(&ua);
    argset_free(&ba);
    return diff;
}

static void jit_matches_unbaked(void **state)
{
    (void)state;
    static const char *const dtypes[] = {"f32", "f64"}, *const unrolls[] = {"auto", "none"};
    int failures = 0;
    for (int d = 0; d < 2; d++)
        for (int un = 0; un < 2; un++) {
            size_t es = d ? 8 : 4;
            void *w1 = weights("w1", es), *w2 = weights("w2", es);
            kg_const consts[] = {{"w1", w1, NW}, {"w2", w2, NW}};
            kg_request ur = ffn_request(dtypes[d], unrolls[un], NULL, 0);
            kg_request br = ffn_request(dtypes[d], unrolls[un], consts, 2);
            kg_kernel *u = build(&ur), *b = build(&br);
            /* the weights have no gradient, so vjp_saved reads no hidden activation and
               forward_train does not save it (pipeline.lua: prune_saved) */
            assert_true(kg_arg_index(u, KG_FORWARD_TRAIN, "hidden.saved") >= 0);
            assert_true(kg_arg_index(b, KG_FORWARD_TRAIN, "hidden.saved") < 0);
            for (int p = 0; p < KG_NPASSES; p++) {
                char *diff = compare_baked(u, b, (kg_pass)p, w1, w2);
                if (diff) {
                    print_error("%s unroll=%s: %s\n", dtypes[d], unrolls[un], diff);
                    failures++;
                }
                free(diff);
            }
            kg_free(u);
            kg_free(b);
            free(w1);
            free(w2);
        }
    assert_int_equal(failures, 0);
}

typedef int (*entry_fn)(void *const *);

static void aot_matches_jit(void **state)
{
    (void)state;
    if (!on_path("gcc"))
        skip();
    char dir[] = "/tmp/kg_const_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const char *const dtypes[] = {"f32", "f64"};
    kg_kernel *k[2];
    void *w[2][2];
    char *thunks = xprintf("%s/thunks.c", dir), *so = xprintf("%s/baked.so", dir), *log = xprintf("%s/gcc.log", dir);
    FILE *f = fopen(thunks, "w");
    assert_non_null(f);
    job j;
    static const char *const gcc[] = {"gcc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O3",
                                      "-march=native", "-fPIC", "-shared", NULL};
    job_init(&j, log, gcc, "-I", dir, "-o", so, thunks, (const char *)NULL);
    for (int d = 0; d < 2; d++) {
        size_t es = d ? 8 : 4;
        w[d][0] = weights("w1", es);
        w[d][1] = weights("w2", es);
        kg_const consts[] = {{"w1", w[d][0], NW}, {"w2", w[d][1], NW}};
        kg_request r = ffn_request(dtypes[d], "none", consts, 2); /* as kerngen emit */
        k[d] = build(&r);
        char *err = NULL;
        if (kg_write_files(k[d], dir, &err) != KG_OK)
            fail_msg("kg_write_files: %s", err);
        fprintf(f, "#include \"%s\"\n", kg_text(k[d], KG_TEXT_HEADER_FILE));
        print_thunks(f, k[d], "", d ? "b64_" : "b32_");
        char *c = xprintf("%s/%s", dir, kg_text(k[d], KG_TEXT_SOURCE_FILE));
        job_add(&j, c);
        free(c);
    }
    assert_int_equal(fclose(f), 0);
    run_jobs(&j, 1);
    char *problem = job_problem(&j);
    if (problem)
        fail_msg("%s", problem);
    void *lib = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(lib);
    int failures = 0;
    for (int d = 0; d < 2; d++)
        for (int p = 0; p < KG_NPASSES; p++) {
            char *name = xprintf("%s%s", d ? "b64_" : "b32_", pass_names(p));
            void *sym = dlsym(lib, name);
            free(name);
            assert_non_null(sym);
            entry_fn fn;
            memcpy(&fn, &sym, sizeof sym);
            argset jit, aot;
            argset_make(&jit, k[d], (kg_pass)p);
            argset_make(&aot, k[d], (kg_pass)p);
            int rj = kg_call(k[d], (kg_pass)p, jit.args, jit.n + 1), ra = fn(aot.args);
            char *diff = rj != ra ? xprintf("return codes %d (JIT) and %d (gcc)", rj, ra)
                                  : outputs_differ(k[d], (kg_pass)p, &jit, &aot, "JIT", "gcc");
            if (diff) {
                print_error("%s: %s\n", dtypes[d], diff);
                failures++;
            }
            free(diff);
            argset_free(&jit);
            argset_free(&aot);
        }
    dlclose(lib);
    for (int d = 0; d < 2; d++) {
        kg_free(k[d]);
        free(w[d][0]);
        free(w[d][1]);
    }
    job_free(&j);
    free(thunks);
    free(so);
    free(log);
    kgt_remove_tree(dir);
    assert_int_equal(failures, 0);
}

/* The size of section NAME in the output of `size -A` (-1 when absent). */
static long section_size(const char *text, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, len) == 0 && (p[len] == ' ' || p[len] == '\t'))
            return strtol(p + len, NULL, 10);
    return -1;
}

/* For a Cortex-M4F (arm-none-eabi-gcc, strict warnings) the tables are read-only data, in
   flash: the object has no .data or .bss, and .rodata holds at least the tables' bytes. At -O0,
   where gcc does not move a static array that nothing writes into .rodata by itself. */
static void cortex_m4_flash(void **state)
{
    (void)state;
    if (!on_path("arm-none-eabi-gcc") || !on_path("arm-none-eabi-size"))
        skip();
    char dir[] = "/tmp/kg_const_m4_XXXXXX";
    assert_non_null(mkdtemp(dir));
    void *w1 = weights("w1", 4), *w2 = weights("w2", 4);
    kg_const consts[] = {{"w1", w1, NW}, {"w2", w2, NW}};
    kg_request r = ffn_request("f32", "none", consts, 2);
    kg_kernel *k = build(&r);
    char *err = NULL;
    if (kg_write_files(k, dir, &err) != KG_OK)
        fail_msg("kg_write_files: %s", err);
    char *src = xprintf("%s/%s", dir, kg_text(k, KG_TEXT_SOURCE_FILE)), *obj = xprintf("%s/k.o", dir);
    char *clog = xprintf("%s/cc.log", dir), *slog = xprintf("%s/size.log", dir);
    static const char *const cc[] = {"arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                                     "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                                     "-ffp-contract=off", "-O0", "-c", NULL};
    static const char *const size[] = {"arm-none-eabi-size", "-A", NULL};
    job j[2];
    job_init(&j[0], clog, cc, "-o", obj, src, (const char *)NULL);
    run_jobs(&j[0], 1);
    char *problem = job_problem(&j[0]);
    if (problem)
        fail_msg("%s", problem);
    job_init(&j[1], slog, size, obj, (const char *)NULL);
    run_jobs(&j[1], 1);
    assert_int_equal(j[1].status, 0);
    char *text = slurp(slog, NULL);
    assert_non_null(text);
    long data = section_size(text, ".data"), bss = section_size(text, ".bss"), ro = section_size(text, ".rodata");
    if (data > 0 || bss > 0 || ro < (long)kg_table_bytes(k))
        fail_msg(".data %ld, .bss %ld, .rodata %ld bytes (tables: %zu):\n%s", data, bss, ro, kg_table_bytes(k), text);
    free(text);
    job_free(&j[0]);
    job_free(&j[1]);
    free(src);
    free(obj);
    free(clog);
    free(slog);
    kg_free(k);
    free(w1);
    free(w2);
    kgt_remove_tree(dir);
}

/* Occurrences of needle in text. */
static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void arguments_and_header(void **state)
{
    (void)state;
    void *w1 = weights("w1", 4), *w2 = weights("w2", 4);
    kg_const consts[] = {{"w2", w2, NW}, {"w1", w1, NW}}; /* any order: tables in input order */
    kg_request r = ffn_request("f32", "none", consts, 2);
    r.name = "ffn";
    kg_kernel *k = build(&r);
    for (int p = 0; p < KG_NPASSES; p++) {
        assert_int_equal(kg_arg_index(k, (kg_pass)p, "w1"), -1);
        assert_int_equal(kg_arg_index(k, (kg_pass)p, "w2"), -1);
        for (int i = 0; i < kg_nargs(k, (kg_pass)p); i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            if (strcmp(a->name, "w1") == 0 || strcmp(a->name, "w2") == 0)
                fail_msg("%s: argument %s", pass_names(p), a->cname);
        }
    }
    assert_int_equal(kg_arg_index(k, KG_VJP, "w1.grad"), -1);
    assert_int_equal(kg_arg_index(k, KG_VJP, "x.grad"), 4); /* x, b1, b2, y.cotangent, x.grad */
    assert_int_equal(kg_arg_index(k, KG_JVP, "w1.tangent"), -1);
    const char *h = kg_text(k, KG_TEXT_HEADER), *c = kg_text(k, KG_TEXT_SOURCE), *jit = kg_text(k, KG_TEXT_JIT_SOURCE);
    static const char *const absent[] = {"FFN_W1_SIZE", "FFN_W2_SIZE", "*restrict w1", "*restrict w2", "w1_grad",
                                         "w2_grad", "w1_tan", "w2_tan", " input w1", " input w2"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        if (strstr(h, absent[i]))
            fail_msg("the header mentions '%s'", absent[i]);
        if (strstr(c, absent[i]))
            fail_msg("the source mentions '%s'", absent[i]);
    }
    assert_non_null(strstr(h, "passes=forward,vjp,jvp,forward_train,vjp_saved,train train=b1,b2 optimizer=adam const=w1,w2\n"));
    assert_non_null(strstr(h, " * tables:  w1 [64, 16], w2 [16, 64] baked in as static const float tables: 8192 bytes"));
    assert_int_equal(kg_table_bytes(k), 2 * NW * 4);
    assert_int_equal(count_of(c, "static const float ffn_w1[1024] = {"), 1);
    assert_int_equal(count_of(c, "static const float ffn_w2[1024] = {"), 1);
    assert_int_equal(count_of(jit, "static const float ffn_w1[1024] = {"), 1);
    assert_true(strstr(c, "ffn_w1[1024]") < strstr(c, "ffn_w2[1024]")); /* input order */
    assert_non_null(strstr(c, "    /* w1[63] */\n")); /* each row opens with its index */
    assert_non_null(strstr(c, "    0.0f, -0.0f, 1.0f, -2.0f, 12345.0f, 0.100000001f, -65536.5f, 0.00100000005f,\n"));
    const char *after_banner = strstr(h, " */\n");
    assert_non_null(after_banner);
    assert_null(strstr(after_banner, "w1")); /* only the banner names them */
    assert_null(strstr(after_banner, "w2"));
    kg_free(k);
    free(w1);
    free(w2);
}

static void closed_forms(void **state)
{
    (void)state;
    static const char *const params[] = {"rows=3", "dim=7"};
    double gamma[7];
    uint64_t seed = seed_of("gamma");
    for (int i = 0; i < 7; i++)
        gamma[i] = 1.0 + 0.5 * lcg_normalish(&seed);
    kg_const consts[] = {{"gamma", gamma, 7}};
    kg_kernel *k[2];
    for (int closed = 0; closed < 2; closed++) {
        kg_request r;
        memset(&r, 0, sizeof r);
        r.graph = "layernorm";
        r.params = params;
        r.nparams = 2;
        r.dtype = "f64";
        r.vjp_form = r.jvp_form = closed ? "closed" : "derived";
        r.consts = consts;
        r.nconsts = 1;
        k[closed] = build(&r);
    }
    for (int p = 0; p <= KG_JVP; p++) { /* the passes that read saved values take them from argset,
                                            not from x: closed and derived forms read them differently */
        argset a, b;
        argset_make(&a, k[0], (kg_pass)p);
        argset_make(&b, k[1], (kg_pass)p);
        assert_int_equal(kg_nargs(k[0], (kg_pass)p), kg_nargs(k[1], (kg_pass)p));
        assert_int_equal(kg_call(k[0], (kg_pass)p, a.args, a.n + 1), 0);
        assert_int_equal(kg_call(k[1], (kg_pass)p, b.args, b.n + 1), 0);
        /* closed and derived forms round differently: equal within a few ulps */
        for (int i = 0; i < a.n; i++) {
            const kg_arg *arg = kg_arg_at(k[0], (kg_pass)p, i);
            if (kg_role_reads(arg->role))
                continue;
            double ref[32], got[32];
            assert_true(arg->count <= 32);
            memcpy(ref, a.args[i], arg->count * 8);
            memcpy(got, b.args[i], arg->count * 8);
            double rel = 0;
            for (size_t e = 0; e < arg->count; e++)
                rel = fmax(rel, fabs(ref[e] - got[e]) / fmax(1.0, fabs(ref[e])));
            if (!(rel < 1e-13))
                fail_msg("%s %s: closed and derived differ by %g", pass_names(p), arg->cname, rel);
        }
        argset_free(&a);
        argset_free(&b);
    }
    kg_free(k[0]);
    kg_free(k[1]);
}

/* kg_generate fails with KG_EINPUT and a message holding every needle (NULL-terminated). */
static void expect_einput(int line, const kg_const *consts, int n, const char *graph, ...)
{
    static const char *const ln_params[] = {"rows=3", "dim=5"};
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = graph;
    r.params = strcmp(graph, "layernorm") == 0 ? ln_params : NULL;
    r.nparams = strcmp(graph, "layernorm") == 0 ? 2 : 0;
    r.dtype = "f64";
    r.consts = consts;
    r.nconsts = n;
    kg_kernel *k = (kg_kernel *)1;
    char *err = NULL;
    kg_status st = kg_generate(&r, &k, &err);
    if (st != KG_EINPUT || k != NULL || !err)
        fail_msg("line %d: expected KG_EINPUT, got %d (%s)", line, (int)st, err ? err : "no message");
    va_list ap;
    va_start(ap, graph);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        if (!strstr(err, needle))
            fail_msg("line %d: the message '%s' lacks '%s'", line, err, needle);
    va_end(ap);
    free(err);
}
#define EXPECT_EINPUT(consts, n, graph, ...) expect_einput(__LINE__, (consts), (n), (graph), __VA_ARGS__, (const char *)NULL)

static void library_errors(void **state)
{
    (void)state;
    double five[5] = {1, 2, 3, 4, 5}, six[6] = {0};
    kg_const unknown[] = {{"z", five, 5}};
    EXPECT_EINPUT(unknown, 1, "layernorm", "--const z", "no input", "x, gamma, beta");
    kg_const output[] = {{"y", five, 5}};
    EXPECT_EINPUT(output, 1, "layernorm", "--const y", "no input");
    kg_const twice[] = {{"gamma", five, 5}, {"gamma", five, 5}};
    EXPECT_EINPUT(twice, 2, "layernorm", "--const gamma", "twice");
    kg_const count[] = {{"gamma", six, 6}};
    EXPECT_EINPUT(count, 1, "layernorm", "--const gamma", "6 values", "[5]");
    double nan5[5] = {1, 2, NAN, 4, 5};
    kg_const nan[] = {{"gamma", nan5, 5}};
    EXPECT_EINPUT(nan, 1, "layernorm", "--const gamma", "element 2", "NaN");
    double inf5[5] = {1, 2, 3, 4, -INFINITY};
    kg_const inf[] = {{"beta", inf5, 5}};
    EXPECT_EINPUT(inf, 1, "layernorm", "--const beta", "element 4", "-inf");
    kg_const off[] = {{"beta", five, 5}}; /* rmsnorm has beta only with bias=1 */
    EXPECT_EINPUT(off, 1, "rmsnorm", "--const beta", "no input");
    kg_const nodata[] = {{"gamma", NULL, 5}};
    EXPECT_EINPUT(nodata, 1, "layernorm", "consts[0]", "no data");
    kg_const noname[] = {{"gamma", five, 5}, {NULL, five, 5}};
    EXPECT_EINPUT(noname, 2, "layernorm", "consts[1]", "no name");
    EXPECT_EINPUT(NULL, 1, "layernorm", "consts is NULL");
    /* the happy path of the same request, for contrast */
    kg_const good[] = {{"gamma", five, 5}};
    static const char *const ln_params[] = {"rows=3", "dim=5"};
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = "layernorm";
    r.params = ln_params;
    r.nparams = 2;
    r.dtype = "f64";
    r.consts = good;
    r.nconsts = 1;
    kg_kernel *k = build(&r);
    assert_int_equal(kg_nargs(k, KG_FORWARD), 3); /* x, beta, y */
    assert_int_equal(kg_table_bytes(k), 40);
    kg_free(k);
    /* kg_check builds f32 and f64 kernels: data of one dtype cannot serve both */
    kg_check_result res;
    char *err = NULL;
    assert_int_equal(kg_check_run(&r, 1, &res, &err), KG_EINPUT);
    assert_non_null(strstr(err, "consts"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jit_matches_unbaked),
        cmocka_unit_test(aot_matches_jit),
        cmocka_unit_test(cortex_m4_flash),
        cmocka_unit_test(arguments_and_header),
        cmocka_unit_test(closed_forms),
        cmocka_unit_test(library_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
