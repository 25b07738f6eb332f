/*
 * test_aot.c - cmocka tests for kerngen's ahead-of-time output (kg_write_files).
 *
 * The same generated code runs two ways: JIT-compiled in memory by libtcc (kg_compile and
 * kg_call) and written as <name>.h/<name>.c for a real compiler. This file checks that the
 * written files keep their promises, for every graph kg_graphs() lists at the time it runs
 * (that they compute the JIT's bits under every compiler, on the host and on a Cortex-M4F, is
 * test_identity.c's job):
 *
 *   warning_free_strict       the .c (and the .h it includes) compile with gcc and with clang
 *                             under -std=c99 -Wall -Wextra -Wpedantic -Werror.
 *   cortex_m4                 the f32 .c compiles for a Cortex-M4 (arm-none-eabi-gcc, hard
 *                             single-precision float); skipped only if that compiler is absent.
 *   deterministic_bytes       the same request generates byte-identical header and source,
 *                             for each unroll policy.
 *   passes_in_parallel_are_the_same  a request's passes generated on several threads and
 *                             joined give the kernel (texts, arguments) or the error of one job.
 *   golden_emitted_file       tests/golden_emit/ holds one committed pair of emitted files;
 *                             regenerating it must give the same bytes. KERNGEN_UPDATE_GOLDEN=1
 *                             rewrites the pair instead (see tests/golden_emit/README.md).
 *   schedules_are_bit_identical  every graph: unroll auto, none, full and fusion off give the same bits.
 *   jit_schedule_at_default_dims  every graph at its default dims: unroll auto (the JIT's loops,
 *                             strip-mined, with base pointers), fusion off (no blocking,
 *                             which only these dims reach) and --target scalar (no jams, sums
 *                             written out) give the bits of unroll none; so do the next two.
 *   blocked_products_are_bit_identical  seq_ffn where products are jammed, tiled and chunked:
 *                             the same bits as without blocking, also with --fma on.
 *   wide_and_narrow_forms_are_bit_identical  nests emitted in two or three forms (KG_WIDE,
 *                             KG_TILE_LANES): the file built with gcc under each gives the JIT's bits.
 *   vector_and_array_lanes_are_bit_identical  reduces emitted in two forms (KG_VEC): likewise.
 *   fma_schedules_are_bit_identical  the same with --fma on, also at long LayerNorm rows.
 *   rows_side_by_side_are_bit_identical  normalizations whose rows block.lua runs side by side:
 *                             the same bits as without blocking, also with --fma on.
 *   saved_passes_match        every graph: forward_train = forward, vjp_saved = vjp, bit for bit.
 *   jit_cycle_no_leak         repeated generate+compile+call+free (./build.sh asan checks leaks).
 *
 * Compilers run as child processes (kg_aot.h: posix_spawnp, never a shell), at most two at a
 * time; their output goes to a log file that a failure message prints. A graph failing a check does not
 * stop the loop: every graph is checked and reported, then the test fails if any did. All
 * files live in one mkdtemp() directory that the group teardown removes.
 *
 * The first two tests build every graph twice per dtype: at small explicit dims with the
 * default unroll policy (small_dims in kg_aot.h; fully unrolled code at the default dims takes gcc
 * seconds per file), and at the default dims with unroll "none" (compact loops, quick to
 * compile at any size). A graph missing from small_dims uses its default dims for both, and
 * a compile slower than SLOW_COMPILE_S is reported so that it can be given small dims there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <math.h>

#include "kg_aot.h"

#define SLOW_COMPILE_S 10.0  /* a compile slower than this deserves small dims in kg_aot.h */

/* Every graph is built twice: at small dims (the defaults if the graph is not in small_dims)
   with the default unroll policy, and at its default dims with unroll "none", whose loops
   compile quickly at any size and exercise the looped code paths. */
enum { V_SMALL_AUTO, V_DEFAULT_NONE, NVARIANTS };
static const char *const variant_dir[NVARIANTS] = {"small_auto", "default_none"};

static const char *const dtypes[] = {"f32", "f64"};

static const char *const gcc_strict[] = {"gcc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic",
                                         "-Werror", "-c", NULL};
static const char *const clang_strict[] = {"clang", "-std=c99", "-Wall", "-Wextra", "-Wpedantic",
                                           "-Werror", "-c", NULL};
static const char *const arm_m4[] = {"arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra",
                                     "-Wpedantic", "-Werror", "-mcpu=cortex-m4", "-mthumb",
                                     "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-ffp-contract=off",
                                     "-O2", "-c", NULL};

typedef struct {
    char dir[64];  /* mkdtemp() directory for every file the tests write */
    char **graphs; /* kg_graphs(), one name per entry */
    int ngraphs;
} fixture;


/* ---- fixture ---- */


static int group_teardown(void **state)
{
    fixture *fx = *state;
    if (fx->dir[0])
        kgt_remove_tree(fx->dir);
    for (int i = 0; i < fx->ngraphs; i++)
        free(fx->graphs[i]);
    free(fx->graphs);
    free(fx);
    return 0;
}

/* The temporary directory (with one subdirectory per variant) and the graph names. */
static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char *text = NULL, *err = NULL;
    int ok = fx != NULL;
    *state = fx;
    if (ok) {
        strcpy(fx->dir, "/tmp/kg_aot_test_XXXXXX");
        if (!mkdtemp(fx->dir)) {
            fprintf(stderr, "group setup: mkdtemp: %s\n", strerror(errno));
            fx->dir[0] = '\0';
            ok = 0;
        }
    }
    for (int v = 0; ok && v < NVARIANTS; v++) {
        char sub[sizeof fx->dir + 32];
        snprintf(sub, sizeof sub, "%s/%s", fx->dir, variant_dir[v]);
        ok = mkdir(sub, 0755) == 0;
    }
    if (ok && kg_graphs(&text, &err) != KG_OK) {
        fprintf(stderr, "group setup: kg_graphs: %s\n", err ? err : "?");
        ok = 0;
    }
    for (char *save = NULL, *line = ok ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char **g = realloc(fx->graphs, (size_t)(fx->ngraphs + 1) * sizeof *g);
        if (!g) {
            ok = 0;
            break;
        }
        fx->graphs = g;
        if ((fx->graphs[fx->ngraphs] = malloc(strlen(line) + 1)) == NULL) {
            ok = 0;
            break;
        }
        strcpy(fx->graphs[fx->ngraphs++], line);
    }
    free(text);
    free(err);
    if (ok && fx->ngraphs == 0) {
        fprintf(stderr, "group setup: kg_graphs listed no graph\n");
        ok = 0;
    }
    if (!ok && fx)
        group_teardown(state);
    return ok ? 0 : -1;
}

/* ---- generated cases: one graph and dtype, its files written to the fixture directory ---- */

typedef struct {
    const char *graph, *dtype;
    int variant;
    kg_kernel *k;
    char *base;    /* fixture dir + "/" + kernel name: prefix of every file of the case */
    char *c_path;  /* the emitted .c */
    char *problem; /* first failure, malloc'd */
    job jobs[2];
    int njobs;
} kcase;

/* Generates the case (kg_aot.h: generate_case) and writes its .h and .c into the variant's
   directory; sets c->problem. */
static void case_prepare(const fixture *fx, kcase *c)
{
    int dflt = c->variant == V_DEFAULT_NONE;
    kg_status st;
    char *err = NULL;
    c->k = generate_case(c->graph, c->dtype, dflt ? "none" : NULL, NULL, !dflt, NULL, NULL, &st,
                         &c->problem);
    if (!c->k || c->problem)
        return;
    char *dir = xprintf("%s/%s", fx->dir, variant_dir[c->variant]);
    c->base = xprintf("%s/%s", dir, kg_text(c->k, KG_TEXT_NAME));
    c->c_path = xprintf("%s/%s", dir, kg_text(c->k, KG_TEXT_SOURCE_FILE));
    if (kg_write_files(c->k, dir, &err) != KG_OK) {
        c->problem = xprintf("kg_write_files failed: %s", err ? err : "?");
        free(err);
    }
    free(dir);
}

static void case_free(kcase *c)
{
    kg_free(c->k);
    free(c->base);
    free(c->c_path);
    free(c->problem);
    for (int i = 0; i < c->njobs; i++)
        job_free(&c->jobs[i]);
    memset(c, 0, sizeof *c);
}

/* Cases for every graph, variant and dtype in DT[0..ndt-1]; *n receives their number. */
static kcase *cases_make(const fixture *fx, const char *const *dt, int ndt, int *n)
{
    kcase *cs = calloc((size_t)(fx->ngraphs * ndt * NVARIANTS) + 1, sizeof *cs);
    assert_non_null(cs);
    *n = 0;
    for (int g = 0; g < fx->ngraphs; g++)
        for (int v = 0; v < NVARIANTS; v++)
            for (int d = 0; d < ndt; d++) {
                kcase *c = &cs[(*n)++];
                c->graph = fx->graphs[g];
                c->dtype = dt[d];
                c->variant = v;
                case_prepare(fx, c);
            }
    return cs;
}

/* Runs every job of every case that has no problem yet, then records the first job failure. */
static void cases_run_jobs(kcase *cs, int n)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        total += cs[i].problem ? 0 : cs[i].njobs;
    job *all = calloc((size_t)total + 1, sizeof *all);
    assert_non_null(all);
    int at = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; !cs[i].problem && j < cs[i].njobs; j++)
            all[at++] = cs[i].jobs[j];
    run_jobs(all, (size_t)total);
    at = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; !cs[i].problem && j < cs[i].njobs; j++) {
            cs[i].jobs[j] = all[at++];
            if (cs[i].jobs[j].seconds > SLOW_COMPILE_S)
                print_message("NOTE %s %s: %s took %.1f s at these dims; give the graph small "
                              "dims in small_dims[] of tests/test_aot.c\n",
                              cs[i].graph, cs[i].dtype, cs[i].jobs[j].argv[0],
                              cs[i].jobs[j].seconds);
        }
    free(all);
    for (int i = 0; i < n; i++)
        for (int j = 0; !cs[i].problem && j < cs[i].njobs; j++)
            cs[i].problem = job_problem(&cs[i].jobs[j]);
}

/* Prints one line per case and fails the test if any case has a problem. */
static void cases_report(kcase *cs, int n, const char *what)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        kcase *c = &cs[i];
        const char *params = c->k ? kg_text(c->k, KG_TEXT_PARAMS) : "";
        const char *unroll = c->variant == V_DEFAULT_NONE ? "none" : "auto";
        if (c->problem) {
            failed++;
            print_error("FAIL %s %s unroll=%s (%s): %s\n", c->graph, c->dtype, unroll, params,
                        c->problem);
        } else {
            print_message("ok   %s %s unroll=%s (%s): %s", c->graph, c->dtype, unroll, params,
                          what);
            for (int j = 0; j < c->njobs; j++)
                print_message("%s %s %.2f s", j ? "," : ";", c->jobs[j].argv[0],
                              c->jobs[j].seconds);
            print_message("\n");
        }
    }
    for (int i = 0; i < n; i++)
        case_free(&cs[i]);
    free(cs);
    if (failed)
        fail_msg("%d of %d graph/dtype cases failed (see FAIL lines above)", failed, n);
}


/* ---- 1. and 2. the emitted files compile cleanly ---- */

static void add_compile_job(kcase *c, const char *const *compiler, const char *tag)
{
    char *obj = xprintf("%s.%s.o", c->base, tag);
    char *log = xprintf("%s.%s.log", c->base, tag);
    job_init(&c->jobs[c->njobs++], log, compiler, "-o", obj, c->c_path, (const char *)NULL);
    free(obj);
    free(log);
}

static void warning_free_strict(void **state)
{
    fixture *fx = *state;
    int n;
    kcase *cs = cases_make(fx, dtypes, 2, &n);
    for (int i = 0; i < n; i++)
        if (!cs[i].problem) {
            add_compile_job(&cs[i], gcc_strict, "gcc");
            add_compile_job(&cs[i], clang_strict, "clang");
        }
    cases_run_jobs(cs, n);
    cases_report(cs, n, "no warnings under -std=c99 -Wall -Wextra -Wpedantic -Werror");
}

/* The JIT's text where it holds x86-64 machine code (gen/x86.lua: reductions, elementwise loops,
   tiles with loops inside, math calls), compiled with the machine code (-mavx2 -mfma): no
   warnings either (the machine code is one long string: the template silences that one). */
static void x86_text_warning_free(void **state)
{
    fixture *fx = *state;
    static const char *const gcc_x86[] = {"gcc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                                          "-mavx2", "-mfma", "-O2", "-c", NULL};
    static const char *const clang_x86[] = {"clang", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                                            "-mavx2", "-mfma", "-O2", "-c", NULL};
    static const struct {
        const char *graph, *dtype, *fma;
        const char *params[3];
    } reqs[] = {{"layernorm", "f64", NULL, {"rows=3", "dim=40"}},
                {"mlp", "f32", "on", {"seq=2", "dmodel=64", "dff=130"}}};
    job jobs[4];
    int n = 0;
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        kg_request r = request_for(reqs[i].graph, reqs[i].dtype, "auto");
        r.fma = reqs[i].fma;
        r.params = reqs[i].params;
        r.nparams = reqs[i].params[2] ? 3 : 2;
        char *problem = NULL, *err = NULL;
        kg_kernel *k = generate(&r, &problem);
        if (!k)
            fail_msg("%s: %s", reqs[i].graph, problem);
        assert_non_null(strstr(kg_text(k, KG_TEXT_SOURCE), "__asm__"));
        if (kg_write_files(k, fx->dir, &err) != KG_OK)
            fail_msg("kg_write_files: %s", err ? err : "?");
        char *c = xprintf("%s/%s", fx->dir, kg_text(k, KG_TEXT_SOURCE_FILE));
        for (int cc = 0; cc < 2; cc++) {
            char *obj = xprintf("%s.%d.o", c, cc), *log = xprintf("%s.%d.log", c, cc);
            job_init(&jobs[n++], log, cc ? clang_x86 : gcc_x86, "-o", obj, c, (const char *)NULL);
            free(obj);
            free(log);
        }
        free(c);
        kg_free(k);
    }
    run_jobs(jobs, (size_t)n);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char *problem = job_problem(&jobs[i]);
        if (problem) {
            print_error("FAIL %s\n", problem);
            failed++;
        }
        free(problem);
        job_free(&jobs[i]);
    }
    print_message("     %d compiles of machine-code text, %d with warnings\n", n, failed);
    assert_int_equal(failed, 0);
}

static void cortex_m4(void **state)
{
    fixture *fx = *state;
    if (!on_path(arm_m4[0])) {
        print_message("SKIP cortex_m4: %s is not on PATH (apt-get install gcc-arm-none-eabi "
                      "libnewlib-arm-none-eabi)\n", arm_m4[0]);
        skip();
    }
    int n;
    kcase *cs = cases_make(fx, dtypes, 1, &n);
    for (int i = 0; i < n; i++)
        if (!cs[i].problem)
            add_compile_job(&cs[i], arm_m4, "m4");
    cases_run_jobs(cs, n);
    cases_report(cs, n, "compiles for cortex-m4 hard-float -Werror");
}

/* ---- 3. generation is deterministic ---- */

static char *same_bytes_twice(const kg_request *r)
{
    char *problem = NULL;
    kg_kernel *a = generate(r, &problem);
    kg_kernel *b = a ? generate(r, &problem) : NULL;
    if (a && b) {
        if (strcmp(kg_text(a, KG_TEXT_HEADER), kg_text(b, KG_TEXT_HEADER)) != 0)
            problem = xprintf("%s: the header differs between two runs", kg_text(a, KG_TEXT_NAME));
        else if (strcmp(kg_text(a, KG_TEXT_SOURCE), kg_text(b, KG_TEXT_SOURCE)) != 0)
            problem = xprintf("%s: the source differs between two runs", kg_text(a, KG_TEXT_NAME));
    }
    kg_free(a);
    kg_free(b);
    return problem;
}

/* Up to three graphs: these if kg_graphs lists them, else the first ones it lists. */
static const char *const deterministic_graphs[] = {"layernorm", "groupnorm", "prenorm_ffn"};

static int listed(const fixture *fx, const char *graph)
{
    for (int g = 0; g < fx->ngraphs; g++)
        if (strcmp(fx->graphs[g], graph) == 0)
            return 1;
    return 0;
}

/* 0 (with a note) if GRAPH rejects its small_dims as bad input: the table went stale. */
static int small_dims_accepted(const char *graph, const char *const *params, int nparams)
{
    kg_request r;
    kg_status st;
    char *problem = NULL;
    memset(&r, 0, sizeof r);
    r.graph = graph;
    r.params = params;
    r.nparams = nparams;
    kg_free(generate_st(&r, &problem, &st));
    if (st == KG_EINPUT)
        print_message("NOTE %s: small dims rejected (%s); default dims only\n", graph, problem);
    free(problem);
    return st != KG_EINPUT;
}

/* Generates GRAPH twice per dtype and unroll policy: at small dims (if known) for all three
   policies, at the default dims for "auto" and "none". Returns the number of differences. */
static int deterministic_graph(const char *graph, int *checked)
{
    static const char *const unrolls[] = {"auto", "full", "none"};
    kg_request base = request_for(graph, "f32", "auto");
    const char *const *small = base.params;
    int nsmall = base.nparams, failed = 0;
    int known = small && small_dims_accepted(graph, small, nsmall);
    for (int d = 0; d < 2; d++)
        for (int u = 0; u < 3; u++)
            for (int dflt = 0; dflt < 2; dflt++) {
                if ((!dflt && !known) || (dflt && strcmp(unrolls[u], "full") == 0))
                    continue;
                kg_request r = base; /* with the train pass */
                r.dtype = dtypes[d];
                r.unroll = unrolls[u];
                r.params = dflt ? NULL : small;
                r.nparams = dflt ? 0 : nsmall;
                char *problem = same_bytes_twice(&r);
                ++*checked;
                if (problem) {
                    failed++;
                    print_error("FAIL %s %s unroll=%s %s dims: %s\n", graph, r.dtype, r.unroll,
                                dflt ? "default" : "small", problem);
                    free(problem);
                }
            }
    print_message("     %s: generated twice at %s\n", graph,
                  known ? "small dims (auto, full, none) and default dims (auto, none)"
                        : "default dims (auto, none)");
    return failed;
}

static void deterministic_bytes(void **state)
{
    fixture *fx = *state;
    const char *chosen[3];
    int n = 0, checked = 0, failed = 0;
    for (size_t i = 0; i < 3; i++)
        if (listed(fx, deterministic_graphs[i]))
            chosen[n++] = deterministic_graphs[i];
    for (int g = 0; g < fx->ngraphs && n < 3; g++) {
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= strcmp(chosen[i], fx->graphs[g]) == 0;
        if (!dup)
            chosen[n++] = fx->graphs[g];
    }
    assert_true(n > 0);
    for (int i = 0; i < n; i++)
        failed += deterministic_graph(chosen[i], &checked);
    print_message("     %d requests generated twice, %d differed\n", checked, failed);
    assert_int_equal(failed, 0);
}

/* NULL if kernels A and B (of one request) have the same texts and arguments, else what differs */
static char *kernel_difference(const kg_kernel *a, const kg_kernel *b)
{
    for (int t = KG_TEXT_NAME; t <= KG_TEXT_IR; t++)
        if (strcmp(kg_text(a, (kg_text_kind)t), kg_text(b, (kg_text_kind)t)) != 0)
            return xprintf("text %d differs", t);
    size_t sa, ba, sb, bb;
    kg_stats(a, &sa, &ba);
    kg_stats(b, &sb, &bb);
    if (sa != sb || ba != bb)
        return xprintf("the statistics differ");
    for (int p = 0; p < KG_NPASSES; p++) {
        if (kg_has_pass(a, (kg_pass)p) != kg_has_pass(b, (kg_pass)p) || kg_nargs(a, (kg_pass)p) != kg_nargs(b, (kg_pass)p) ||
            kg_ws_size(a, (kg_pass)p) != kg_ws_size(b, (kg_pass)p))
            return xprintf("pass %d: its functions differ", p);
        for (int i = 0; i < kg_nargs(a, (kg_pass)p); i++) {
            const kg_arg *x = kg_arg_at(a, (kg_pass)p, i), *y = kg_arg_at(b, (kg_pass)p, i);
            if (strcmp(x->cname, y->cname) != 0 || strcmp(x->file, y->file) != 0 || x->role != y->role ||
                x->count != y->count || x->ndim != y->ndim)
                return xprintf("pass %d: argument %d differs", p, i);
        }
    }
    return NULL;
}

/* R generated as one job (KERNGEN_JOBS=1) and with its passes on three threads: NULL if both
   give the same kernel, or the same error */
static char *split_difference(const kg_request *r)
{
    kg_kernel *k[2] = {NULL, NULL};
    char *err[2] = {NULL, NULL};
    kg_status st[2];
    for (int i = 0; i < 2; i++) {
        setenv("KERNGEN_JOBS", i == 0 ? "1" : "3", 1);
        st[i] = kg_generate(r, &k[i], &err[i]);
    }
    unsetenv("KERNGEN_JOBS");
    char *problem = NULL;
    if (st[0] != st[1] || (err[0] && strcmp(err[0], err[1]) != 0))
        problem = xprintf("one job: status %d (%s); three threads: status %d (%s)", (int)st[0], err[0] ? err[0] : "",
                          (int)st[1], err[1] ? err[1] : "");
    else if (st[0] == KG_OK)
        problem = kernel_difference(k[0], k[1]);
    for (int i = 0; i < 2; i++) {
        kg_free(k[i]);
        free(err[i]);
    }
    return problem;
}

/* kg_lua.c generates the passes of a request in parallel, each in a Lua state of its own, and
   joins them: every graph (small dims, all passes, the train pass where small_dims names
   trainable inputs; default dims), a training request's two passes, and requests that fail
   come out as when one state makes them. */
static void passes_in_parallel_are_the_same(void **state)
{
    fixture *fx = *state;
    static const char *const one_pair[] = {"rows=3", "dim=24"};
    static const char *const too_big[] = {"rows=100000", "dim=100000"};
    int checked = 0, failed = 0;
    for (int g = 0; g <= fx->ngraphs; g++)
        for (int dflt = 0; dflt < 2; dflt++) {
            kg_request r = request_for(g < fx->ngraphs ? fx->graphs[g] : "layernorm", "f32", NULL);
            if (g == fx->ngraphs) { /* the firmware's pair of passes; and a failing request */
                if (dflt) {
                    r.params = too_big;
                    r.nparams = 2;
                } else {
                    r.params = one_pair;
                    r.train = "gamma";
                    r.passes = (1u << KG_FORWARD_TRAIN) | (1u << KG_TRAIN);
                }
            } else if (dflt) {
                r.params = NULL;
                r.nparams = 0;
            }
            char *problem = split_difference(&r);
            checked++;
            if (problem) {
                failed++;
                print_error("FAIL %s %s dims: %s\n", r.graph, dflt ? "default" : "small", problem);
                free(problem);
            }
        }
    print_message("     %d requests generated both ways, %d differed\n", checked, failed);
    assert_int_equal(failed, 0);
}

/* ---- 4. one committed golden pair of emitted files ---- */

/* NULL if FILE holds exactly TEXT, else what differs (first line that differs). */
static char *golden_problem(const char *file, const char *text)
{
    size_t len;
    char *got = slurp(file, &len);
    if (!got)
        return xprintf("%s: cannot read: %s", file, strerror(errno));
    char *msg = NULL;
    if (len != strlen(text) || memcmp(got, text, len) != 0) {
        size_t line = 1, i = 0, start = 0;
        for (; i < len && text[i] && got[i] == text[i]; i++)
            if (got[i] == '\n') {
                line++;
                start = i + 1;
            }
        int gl = (int)strcspn(got + start, "\n"), tl = (int)strcspn(text + start, "\n");
        msg = xprintf("%s differs from the generated text at line %zu:\n  golden:    %.*s\n"
                      "  generated: %.*s", file, line, gl, got + start, tl, text + start);
    }
    free(got);
    return msg;
}

static void golden_emitted_file(void **state)
{
    (void)state;
    const char *root = getenv("KERNGEN_ROOT");
    const char *update = getenv("KERNGEN_UPDATE_GOLDEN");
    const char *params[] = {"rows=2", "dim=4"};
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = "layernorm";
    r.params = params;
    r.nparams = 2;
    r.dtype = "f32";
    r.unroll = "none"; /* kerngen emit's default */
    char *problem = NULL;
    kg_kernel *k = generate(&r, &problem);
    if (!k)
        fail_msg("%s", problem);
    char *dir = xprintf("%s/tests/golden_emit", root && *root ? root : ".");
    assert_string_equal(kg_text(k, KG_TEXT_NAME), "layernorm_2x4_f32");

    if (update && strcmp(update, "1") == 0) {
        char *err = NULL;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            fail_msg("mkdir %s: %s", dir, strerror(errno));
        r.name = "layernorm_2x4_f32"; /* the same name, given: the old pair may be replaced */
        kg_free(k);
        k = generate(&r, &problem);
        kg_status st = kg_write_files(k, dir, &err);
        if (st != KG_OK)
            fail_msg("kg_write_files %s: %s", dir, err);
        print_message("KERNGEN_UPDATE_GOLDEN=1: rewrote %s/layernorm_2x4_f32.{h,c}\n", dir);
    } else {
        char *h = xprintf("%s/%s", dir, kg_text(k, KG_TEXT_HEADER_FILE));
        char *c = xprintf("%s/%s", dir, kg_text(k, KG_TEXT_SOURCE_FILE));
        problem = golden_problem(h, kg_text(k, KG_TEXT_HEADER));
        if (!problem)
            problem = golden_problem(c, kg_text(k, KG_TEXT_SOURCE));
        free(h);
        free(c);
        if (problem) {
            print_error("%s\n", problem);
            print_error("If the change is intended, review and update the golden files:\n"
                        "  KERNGEN_UPDATE_GOLDEN=1 ./build.sh test\n"
                        "  git diff tests/golden_emit\n"
                        "(set KERNGEN_ROOT=<repository> when not running from its root)\n");
            free(problem);
            kg_free(k);
            free(dir);
            fail_msg("tests/golden_emit/layernorm_2x4_f32.{h,c} do not match the generator");
        }
    }
    kg_free(k);
    free(dir);
}

/* ---- 5. the unroll policies compute the same values ---- */

/* Every graph, f32 and f64, at small dims: the JIT kernels of every schedule (unroll auto,
   none and full; loop fusion off) give the bits of the default schedule, return codes included.
   The order of every sum is fixed in the loop IR, so schedules may only change speed. At the
   graphs' default dims (default_dims), auto against none: there the JIT schedule keeps loops,
   strip-mined, with base pointers (gen/emit_c.lua), which small dims unroll completely. */
typedef struct {
    const char *unroll, *fuse, *fma, *target;
} schedule_variant;

/* Every graph at small or (default_dims) default dims, or only GRAPH with the NPARAMS PARAMS. */
static void compare_schedules(fixture *fx, const schedule_variant *variants, int NV, int default_dims,
                              const char *graph, const char *const *params, int nparams)
{
    int failures = 0, compared = 0;
    for (int g = 0; g < (graph ? 1 : fx->ngraphs); g++)
        for (int d = 0; d < 2; d++) {
            const char *name = graph ? graph : fx->graphs[g];
            kg_kernel *k[8] = {NULL};
            char *problem = NULL;
            for (int v = 0; v < NV && !problem; v++) {
                kg_request r = request_for(name, dtypes[d], variants[v].unroll);
                r.fuse = variants[v].fuse;
                r.fma = variants[v].fma;
                r.target = variants[v].target;
                if (default_dims)
                    r.nparams = 0;
                if (graph) {
                    r.params = params;
                    r.nparams = nparams;
                }
                k[v] = generate_compiled(&r, &problem);
            }
            for (int p = 0; p < KG_NPASSES && !problem; p++) {
                if (!kg_has_pass(k[0], (kg_pass)p))
                    continue; /* train: tests/test_train.c */
                argset s[8];
                int rc[8];
                for (int v = 0; v < NV; v++) {
                    argset_make(&s[v], k[v], (kg_pass)p);
                    rc[v] = kg_call(k[v], (kg_pass)p, s[v].args, s[v].n + 1);
                }
                for (int v = 1; v < NV && !problem; v++) {
                    char label[64];
                    snprintf(label, sizeof label, "unroll=%s fuse=%s%s%s", variants[v].unroll, variants[v].fuse,
                             variants[v].fma ? " fma=on" : "", variants[v].target ? " target=scalar" : "");
                    if (rc[v] != rc[0])
                        problem = xprintf("%s: return code %d, default %d", label, rc[v], rc[0]);
                    else
                        problem = outputs_differ(k[0], (kg_pass)p, &s[0], &s[v], "default", label);
                    compared++;
                }
                for (int v = 0; v < NV; v++)
                    argset_free(&s[v]);
            }
            if (problem) {
                print_message("FAIL %s %s: %s\n", name, dtypes[d], problem);
                failures++;
            }
            free(problem);
            for (int v = 0; v < NV; v++)
                kg_free(k[v]);
        }
    print_message("     %d %s x dtype x pass x schedule comparisons%s%s\n", compared, graph ? graph : "graph",
                  default_dims ? " at default dims" : "", variants[0].fma ? " with --fma on" : "");
    assert_int_equal(failures, 0);
}

static void schedules_are_bit_identical(void **state)
{
    static const schedule_variant variants[] = {
        {"auto", "auto", NULL, NULL}, {"none", "auto", NULL, NULL}, {"full", "auto", NULL, NULL}, {"none", "none", NULL, NULL},
        {"auto", "none", NULL, NULL}};
    compare_schedules(*state, variants, 5, 0, NULL, NULL, 0);
}

static void jit_schedule_at_default_dims(void **state)
{
    static const schedule_variant variants[] = {{"none", "auto", NULL, NULL}, {"auto", "auto", NULL, NULL},
                                                {"none", "none", NULL, NULL}, {"none", "auto", NULL, "scalar"}};
    compare_schedules(*state, variants, 4, 1, NULL, NULL, 0);
}

/* The same with --fma on, where the emitter decides which sums fuse (gen/emit_c.lua,
   FMA_CHAIN): every graph at small dims, and LayerNorm rows of 1000 elements, whose row sums are
   chains too long to fuse. */
static void fma_schedules_are_bit_identical(void **state)
{
    static const schedule_variant variants[] = {
        {"auto", "auto", "on", NULL}, {"none", "auto", "on", NULL}, {"full", "auto", "on", NULL}, {"none", "none", "on", NULL}};
    static const char *const long_rows[] = {"rows=3", "dim=1000"};
    compare_schedules(*state, variants, 4, 0, NULL, NULL, 0);
    compare_schedules(*state, variants, 4, 0, "layernorm", long_rows, 2);
}

/* A size where block.lua jams, tiles and chunks the matrix products (8 rows of 2048
   activations, summed 512 at a time in f32, 256 in f64), chunks dx's accumulation, starts
   dW's tiles from 0 and copies their shared rows (16 rows 8 KB apart) into panels: the JIT's schedule and fusion off (no blocking) give the same bits, also
   with --fma on (which terms fuse must not depend on the blocking). */
static void blocked_products_are_bit_identical(void **state)
{
    static const schedule_variant variants[] = {{"none", "auto", NULL, NULL}, {"auto", "auto", NULL, NULL},
                                                {"none", "none", NULL, NULL}, {"none", "auto", NULL, "scalar"}};
    static const schedule_variant fma[] = {{"none", "auto", "on", NULL}, {"auto", "auto", "on", NULL},
                                           {"none", "none", "on", NULL}, {"none", "auto", "on", "scalar"}};
    static const char *const dims[] = {"seq=16", "dmodel=64", "dff=2048"};
    compare_schedules(*state, variants, 4, 0, "seq_ffn", dims, 3);
    compare_schedules(*state, fma, 4, 0, "seq_ffn", dims, 3);
    /* dx = dh w1 summed over 1024 in chunks, w1's rows 512 bytes apart (8 of a chunk's rows in
       one L1 set): copied into column panels (f32 2 blocks of 64 columns, f64 4 of 32) */
    static const char *const panels[] = {"seq=16", "dmodel=128", "dff=1024"};
    compare_schedules(*state, variants, 4, 0, "seq_ffn", panels, 3);
    compare_schedules(*state, fma, 4, 0, "seq_ffn", panels, 3);
    /* dW2 = dy^T h, h's rows 2 KB apart: column panels of h, and dy's tile panels copied once
       for all tiles (dy's rows 2 KB apart too); dW is compared in the training step (this
       fixture's vjp gives only x's gradient) */
    static const char *const whole[] = {"seq=16", "dmodel=512", "dff=512"};
    compare_schedules(*state, variants, 4, 0, "seq_ffn", whole, 3);
    compare_schedules(*state, fma, 4, 0, "seq_ffn", whole, 3);
    /* y = h w2^T summed over 2304 in chunks (f32: a first of 512 from 0, 3 more, a rest of 256;
       f64: 9 of 256), its 8 rows jammed with 2 outputs under --fma on, and 21 outputs: one
       left over */
    static const char *const chunks[] = {"seq=8", "dmodel=21", "dff=2304"};
    compare_schedules(*state, fma, 4, 0, "seq_ffn", chunks, 3);
}

/* The emitted file of a request, which holds "#if <macro>", built with gcc -O2 under each of
   builds (up to 3 flags separated by spaces: both forms are portable GNU C, on any host), gives
   the JIT's bits in every pass. Returns the failure or NULL; counts the comparisons. */
static char *forms_match_jit(fixture *fx, kg_request *r, const char *macro, const char *const *builds,
                             int nbuilds, int *compared)
{
    static const char *const gcc_so[] = {"gcc", "-std=gnu99", "-O2", "-fPIC", "-shared", NULL};
    char *problem = NULL, *err = NULL;
    kg_kernel *k = generate_compiled(r, &problem);
    if (!k)
        return problem;
    char *marker = xprintf("#if %s", macro);
    assert_non_null(strstr(kg_text(k, KG_TEXT_SOURCE), marker));
    free(marker);
    if (kg_write_files(k, fx->dir, &err) != KG_OK)
        fail_msg("kg_write_files: %s", err ? err : "?");
    char *c = xprintf("%s/%s", fx->dir, kg_text(k, KG_TEXT_SOURCE_FILE));
    char *thunks = xprintf("%s.thunks.c", c);
    FILE *f = fopen(thunks, "w");
    assert_non_null(f);
    fprintf(f, "#include \"%s\"\n", kg_text(k, KG_TEXT_HEADER_FILE));
    print_thunks(f, k, "", "w_");
    fclose(f);
    enum { MAX_BUILDS = 6, MAX_FLAGS = 3 };
    job jobs[MAX_BUILDS];
    char *so[MAX_BUILDS], *flag[MAX_BUILDS][MAX_FLAGS];
    assert_true(nbuilds <= MAX_BUILDS);
    for (int b = 0; b < nbuilds; b++) {
        so[b] = xprintf("%s.%s%d.so", c, macro, b);
        const char *at = builds[b];
        for (int i = 0; i < MAX_FLAGS; i++) { /* missing flags: -O2 again */
            size_t n = strcspn(at, " ");
            flag[b][i] = n ? xprintf("%.*s", (int)n, at) : xprintf("-O2");
            at += n + (at[n] == ' ');
        }
        assert_true(*at == 0);
        char *log = xprintf("%s.%s%d.log", c, macro, b);
        job_init(&jobs[b], log, gcc_so, flag[b][0], flag[b][1], flag[b][2], "-I", fx->dir, "-o", so[b], thunks, c,
                 "-lm", (const char *)NULL);
        free(log);
    }
    run_jobs(jobs, nbuilds);
    for (int b = 0; b < nbuilds; b++) {
        char *built = job_problem(&jobs[b]);
        if (built)
            fail_msg("%s", built);
        void *lib = dlopen(so[b], RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            fail_msg("dlopen %s: %s", so[b], dlerror());
        for (int p = 0; p < KG_NPASSES && !problem; p++) {
            if (!kg_has_pass(k, (kg_pass)p))
                continue;
            char *name = xprintf("w_%s", pass_names(p));
            void *sym = dlsym(lib, name);
            free(name);
            assert_non_null(sym);
            int (*fn)(void *const *);
            memcpy(&fn, &sym, sizeof sym); /* ISO C has no object-to-function pointer cast */
            argset jit, aot;
            argset_make(&jit, k, (kg_pass)p);
            argset_make(&aot, k, (kg_pass)p);
            int rc_jit = kg_call(k, (kg_pass)p, jit.args, jit.n + 1), rc_aot = fn(aot.args);
            if (rc_jit != rc_aot)
                problem = xprintf("%s: %s returns %d, the JIT %d", builds[b], pass_names(p), rc_aot, rc_jit);
            else
                problem = outputs_differ(k, (kg_pass)p, &jit, &aot, "JIT", builds[b]);
            (*compared)++;
            argset_free(&jit);
            argset_free(&aot);
        }
        dlclose(lib);
        job_free(&jobs[b]);
        free(so[b]);
        for (int i = 0; i < MAX_FLAGS; i++)
            free(flag[b][i]);
    }
    free(thunks);
    free(c);
    kg_free(k);
    return problem;
}

/* Nests in two forms (block.lua) for 32 registers of 512 bits (#if KG_WIDE) and for fewer or
   narrower (#if !KG_WIDE): the forward's second product as 4 crowded rows x 4 outputs or 4 x 1,
   the backward's accumulation tiles (dx, dW1, dW2 from zero) with two lane loops of columns
   per output or one scalar column; the narrow tiles also in one lane loop (KG_TILE_LANES, the
   default under clang). tcc defines no __AVX512F__: the JIT runs the narrow scalar forms. */
static void wide_and_narrow_forms_are_bit_identical(void **state)
{
    static const char *const dims[] = {"seq=64", "dmodel=128", "dff=1024"};
    int failures = 0, compared = 0;
    for (int d = 0; d < 2; d++) {
        kg_request r = request_for("seq_ffn", dtypes[d], "none");
        r.fma = "on";
        r.params = dims;
        r.nparams = 3;
        static const char *const builds[] = {"-DKG_WIDE=0", "-DKG_WIDE=1", "-DKG_WIDE=0 -DKG_TILE_LANES=1"};
        char *problem = forms_match_jit(*state, &r, "KG_WIDE", builds, 3, &compared);
        if (problem) {
            print_message("FAIL seq_ffn %s: %s\n", dtypes[d], problem);
            failures++;
        }
        free(problem);
    }
    print_message("     %d dtype x form x pass comparisons\n", compared);
    assert_int_equal(failures, 0);
}

/* Reduces whose lanes are vector variables (#if KG_VEC, GNU C's vector extension; the default
   of gcc and clang on x86-64) or an array (the JIT's form): two rows side by side with a
   rest of lanes (LayerNorm 3x40: 32 + 8), a sum over an outer loop too (BatchNorm's h x w),
   sums of products, with and without --fma on (RMSNorm's fused squares: KG_VEC_FMA). */
static void vector_and_array_lanes_are_bit_identical(void **state)
{
    static const char *const ln[] = {"rows=3", "dim=40"};
    static const char *const bn[] = {"c=3", "h=4", "w=20"};
    static const char *const rms[] = {"rows=2", "dim=48"};
    const struct { const char *graph; const char *const *dims; int n; } cases[] = {
        {"layernorm", ln, 2}, {"batchnorm2d", bn, 3}, {"rmsnorm", rms, 2}};
    /* the vectors: 16 bytes (SSE2), 32 (AVX2) and 64 (AVX-512) where this processor has them;
       fused products by the vector fma (KG_VEC_FMA, clang's default) where it has FMA */
    const char *builds[6] = {"-DKG_VEC=0", "-DKG_VEC=1"};
    int nbuilds = 2;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("fma"))
        builds[nbuilds++] = "-DKG_VEC=1 -DKG_VEC_FMA=1 -mfma";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        builds[nbuilds++] = "-DKG_VEC=1 -DKG_VEC_FMA=1 -march=haswell";
    if (__builtin_cpu_supports("avx512f"))
        builds[nbuilds++] = "-DKG_VEC=1 -DKG_VEC_FMA=1 -mavx512f";
#endif
    int failures = 0, compared = 0;
    for (size_t g = 0; g < sizeof cases / sizeof cases[0]; g++)
        for (int d = 0; d < 2; d++)
            for (int fma = 0; fma < 2; fma++) {
                kg_request r = request_for(cases[g].graph, dtypes[d], "none");
                r.fma = fma ? "on" : "off";
                r.params = cases[g].dims;
                r.nparams = cases[g].n;
                char *problem = forms_match_jit(*state, &r, "KG_VEC", builds, nbuilds, &compared);
                if (problem) {
                    print_message("FAIL %s %s fma %s: %s\n", cases[g].graph, dtypes[d], r.fma, problem);
                    failures++;
                }
                free(problem);
            }
    print_message("     %d graph x dtype x fma x form x pass comparisons\n", compared);
    assert_int_equal(failures, 0);
}

/* Rows long enough for block.lua to run 2, 3 or 4 rows' sums side by side (rows with a lane
   tail, a row's own workspace and locals copied per row, BatchNorm's channels): the same bits
   as without blocking, also with --fma on. */
static void rows_side_by_side_are_bit_identical(void **state)
{
    static const schedule_variant variants[] = {{"none", "auto", NULL, NULL}, {"auto", "auto", NULL, NULL},
                                                {"none", "none", NULL, NULL}, {"none", "auto", NULL, "scalar"}};
    static const schedule_variant fma[] = {{"none", "auto", "on", NULL}, {"auto", "auto", "on", NULL},
                                           {"none", "none", "on", NULL}, {"none", "auto", "on", "scalar"}};
    static const struct {
        const char *graph;
        const char *params[5];
        int n;
    } cases[] = {
        {"layernorm", {"rows=6", "dim=300"}, 2},
        {"rmsnorm", {"rows=12", "dim=512"}, 2},
        {"softmax", {"rows=9", "dim=260"}, 2},
        {"batchnorm2d", {"c=6", "h=16", "w=20"}, 3},
        {"batchnorm2d", {"c=4", "h=56", "w=56"}, 3}, /* two channels: 25 KB of x read, y beside */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        compare_schedules(*state, variants, 4, 0, cases[i].graph, cases[i].params, cases[i].n);
        compare_schedules(*state, fma, 4, 0, cases[i].graph, cases[i].params, cases[i].n);
    }
}

/* Every graph, f32 and f64, at small dims: forward_train writes forward's outputs, and
   vjp_saved, reading what forward_train saved, gives vjp's gradients, all bit for bit (the saved
   values are the very nodes the VJP would recompute). */
static void saved_passes_match(void **state)
{
    fixture *fx = *state;
    int failures = 0;
    for (int g = 0; g < fx->ngraphs; g++)
        for (int d = 0; d < 2; d++) {
            kg_request r = request_for(fx->graphs[g], dtypes[d], "auto");
            char *problem = NULL;
            kg_kernel *k = generate_compiled(&r, &problem);
            argset s[KG_NPASSES];
            memset(s, 0, sizeof s);
            for (int p = 0; k && p < KG_NPASSES; p++)
                argset_make(&s[p], k, (kg_pass)p);
            /* forward_train: same inputs as forward, then compare the outputs forward has */
            if (k && (kg_call(k, KG_FORWARD, s[KG_FORWARD].args, s[KG_FORWARD].n + 1) != kg_call(k, KG_FORWARD_TRAIN, s[KG_FORWARD_TRAIN].args, s[KG_FORWARD_TRAIN].n + 1)))
                problem = xprintf("forward_train returned another code than forward");
            size_t es = k ? kg_elem_size(k) : 0;
            for (int i = 0; k && !problem && i < s[KG_FORWARD].n; i++) {
                const kg_arg *a = kg_arg_at(k, KG_FORWARD, i);
                if (a->role == KG_ROLE_OUTPUT && memcmp(s[KG_FORWARD].args[i], s[KG_FORWARD_TRAIN].args[i], a->count * es))
                    problem = xprintf("forward_train's %s differs from forward's", a->cname);
            }
            /* vjp_saved: inputs and cotangents as vjp (same file names, same data), saved values
               copied from forward_train's results */
            for (int i = 0; k && !problem && i < s[KG_VJP_SAVED].n; i++) {
                const kg_arg *a = kg_arg_at(k, KG_VJP_SAVED, i);
                if (a->role != KG_ROLE_SAVED)
                    continue;
                for (int j = 0; j < s[KG_FORWARD_TRAIN].n; j++) {
                    const kg_arg *b = kg_arg_at(k, KG_FORWARD_TRAIN, j);
                    if (b->role == KG_ROLE_SAVE && strcmp(b->name, a->name) == 0)
                        memcpy(s[KG_VJP_SAVED].args[i], s[KG_FORWARD_TRAIN].args[j], a->count * es);
                }
            }
            if (k && !problem && kg_call(k, KG_VJP, s[KG_VJP].args, s[KG_VJP].n + 1) != kg_call(k, KG_VJP_SAVED, s[KG_VJP_SAVED].args, s[KG_VJP_SAVED].n + 1))
                problem = xprintf("vjp_saved returned another code than vjp");
            for (int i = 0; k && !problem && i < s[KG_VJP_SAVED].n; i++) {
                const kg_arg *a = kg_arg_at(k, KG_VJP_SAVED, i);
                if (a->role != KG_ROLE_GRAD)
                    continue;
                for (int j = 0; j < s[KG_VJP].n; j++) {
                    const kg_arg *b = kg_arg_at(k, KG_VJP, j);
                    if (b->role == KG_ROLE_GRAD && strcmp(b->name, a->name) == 0 &&
                        memcmp(s[KG_VJP].args[j], s[KG_VJP_SAVED].args[i], a->count * es))
                        problem = xprintf("vjp_saved's %s differs from vjp's", a->cname);
                }
            }
            if (problem) {
                print_message("FAIL %s %s: %s\n", fx->graphs[g], dtypes[d], problem);
                failures++;
            }
            free(problem);
            for (int p = 0; k && p < KG_NPASSES; p++)
                argset_free(&s[p]);
            kg_free(k);
        }
    assert_int_equal(failures, 0);
}

/* ---- 6. repeated JIT cycles ---- */

static void jit_cycle_no_leak(void **state)
{
    (void)state;
    const char *params[] = {"rows=2", "dim=4"};
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = "layernorm";
    r.params = params;
    r.nparams = 2;
    r.dtype = "f32";
    for (int cycle = 0; cycle < 50; cycle++) {
        char *problem = NULL;
        kg_kernel *k = generate_compiled(&r, &problem);
        if (!k)
            fail_msg("cycle %d: %s", cycle, problem);
        for (int p = 0; p < KG_NPASSES; p++) {
            if (!kg_has_pass(k, (kg_pass)p))
                continue;
            argset s;
            argset_make(&s, k, (kg_pass)p);
            int rc = kg_call(k, (kg_pass)p, s.args, s.n + 1);
            argset_free(&s);
            assert_int_equal(rc, 0);
        }
        kg_free(k);
    }
}

/* Per-test timing, printed after each test: the whole file should stay well under a minute. */
static double test_started;

static int timer_start(void **state)
{
    (void)state;
    test_started = now_s();
    return 0;
}

static int timer_stop(void **state)
{
    (void)state;
    print_message("     (%.1f s)\n", now_s() - test_started);
    return 0;
}

#define TIMED(f) cmocka_unit_test_setup_teardown(f, timer_start, timer_stop)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIMED(warning_free_strict),
        TIMED(cortex_m4),
        TIMED(x86_text_warning_free),
        TIMED(deterministic_bytes),
        TIMED(passes_in_parallel_are_the_same),
        TIMED(golden_emitted_file),
        TIMED(schedules_are_bit_identical),
        TIMED(jit_schedule_at_default_dims),
        TIMED(blocked_products_are_bit_identical),
        TIMED(wide_and_narrow_forms_are_bit_identical),
        TIMED(vector_and_array_lanes_are_bit_identical),
        TIMED(rows_side_by_side_are_bit_identical),
        TIMED(fma_schedules_are_bit_identical),
        TIMED(saved_passes_match),
        TIMED(jit_cycle_no_leak),
    };
    return cmocka_run_group_tests_name("aot", tests, group_setup, group_teardown);
}
