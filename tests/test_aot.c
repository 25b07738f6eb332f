/*
 * test_aot.c - cmocka tests for kerngen's ahead-of-time output (kg_write_files).
 *
 * The same generated code runs two ways: JIT-compiled in memory by libtcc (kg_compile and
 * kg_call) and written as <name>.h/<name>.c for a real compiler. This file checks that the
 * written files keep their promises, for every graph kg_graphs() lists at the time it runs:
 *
 *   bit_identical_jit_aot     gcc -O2 builds the .c into a shared object; dlopen'd, its
 *                             forward/VJP/JVP give exactly the bits (memcmp) and return codes
 *                             the JIT gives on the same inputs, f32 and f64. The .so is built
 *                             with -ffp-contract=off: the generated C states every rounding,
 *                             and letting gcc fuse a*b+c into an FMA (which tcc never does)
 *                             would change the last bits on machines with FMA.
 *   warning_free_strict       the .c (and the .h it includes) compile with gcc and with clang
 *                             under -std=c99 -Wall -Wextra -Wpedantic -Werror.
 *   cortex_m4                 the f32 .c compiles for a Cortex-M4 (arm-none-eabi-gcc, hard
 *                             single-precision float); skipped only if that compiler is absent.
 *   deterministic_bytes       the same request generates byte-identical header and source,
 *                             for each unroll policy.
 *   golden_emitted_file       tests/golden_emit/ holds one committed pair of emitted files;
 *                             regenerating it must give the same bytes. KERNGEN_UPDATE_GOLDEN=1
 *                             rewrites the pair instead (see tests/golden_emit/README.md).
 *   unroll_policies_agree_in_value  unroll auto, full and none compute the same values.
 *   jit_cycle_no_leak         repeated generate+compile+call+free (./build.sh asan checks leaks).
 *
 * Compilers run as child processes (posix_spawnp, never a shell), at most two at a time; their
 * output goes to a log file that a failure message prints. A graph failing a check does not
 * stop the loop: every graph is checked and reported, then the test fails if any did. All
 * files live in one mkdtemp() directory that the group teardown removes.
 *
 * The first three tests build every graph twice per dtype: at small explicit dims with the
 * default unroll policy (small_dims below; fully unrolled code at the default dims takes gcc
 * seconds per file), and at the default dims with unroll "none" (compact loops, quick to
 * compile at any size). A graph missing from small_dims uses its default dims for both, and
 * a compile slower than SLOW_COMPILE_S is reported so that it can be given small dims here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kerngen.h"

extern char **environ;

#define MAX_PARALLEL 2       /* compiler processes at once (the machines have 2 cores) */
#define SLOW_COMPILE_S 10.0  /* a compile slower than this deserves small dims below */

/* Small explicit dims for the graphs this file knows; others run at their defaults. */
static const struct {
    const char *graph;
    const char *params[5];
    int nparams;
} small_dims[] = {
    {"batchnorm1d", {"c=3", "l=5"}, 2},
    {"batchnorm2d", {"c=3", "h=2", "w=3"}, 3},
    {"batchnorm3d", {"c=2", "d=2", "h=2", "w=3"}, 4},
    {"batchnorm_inference1d", {"c=3", "l=5"}, 2},
    {"batchnorm_inference2d", {"c=3", "h=2", "w=3"}, 3},
    {"batchnorm_inference3d", {"c=2", "d=2", "h=2", "w=3"}, 4},
    {"ffn", {"dmodel=4", "dff=6"}, 2},
    {"groupnorm", {"b=2", "h=2", "w=2", "c=4", "groups=2"}, 5},
    {"layernorm", {"rows=3", "dim=5"}, 2},
    {"mlp", {"seq=2", "dmodel=4", "dff=6"}, 3},
    {"normalize_axis", {"shape=2x3x4", "axis=1"}, 2},
    {"postnorm_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3},
    {"prenorm_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3},
    {"rmsnorm", {"rows=3", "dim=5"}, 2},
    {"seq_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3},
    {"weightnorm", {"out=3", "in=5"}, 2},
};

/* Every graph is built twice: at small dims (the defaults if the graph is not in small_dims)
   with the default unroll policy, and at its default dims with unroll "none", whose loops
   compile quickly at any size and exercise the looped code paths. */
enum { V_SMALL_AUTO, V_DEFAULT_NONE, NVARIANTS };
static const char *const variant_dir[NVARIANTS] = {"small_auto", "default_none"};

static const char *const dtypes[] = {"f32", "f64"};
static const char *const pass_names[KG_NPASSES] = {"forward", "vjp", "jvp"};

static const char *const gcc_shared[] = {"gcc", "-std=c99", "-O2", "-ffp-contract=off", "-fPIC",
                                         "-shared", NULL};
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

/* ---- small helpers ---- */

#ifdef __GNUC__
__attribute__((format(printf, 1, 2)))
#endif
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *xstrdup(const char *s) { return xprintf("%s", s); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads a whole file, NUL-terminated; NULL if it cannot be read. The caller frees. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
        assert_non_null(buf);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Is PROG an executable somewhere on $PATH? */
static int on_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        return 0;
    int found = 0;
    char *copy = xstrdup(path), *save = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *full = xprintf("%s/%s", *d ? d : ".", prog);
        found = access(full, X_OK) == 0;
        free(full);
    }
    free(copy);
    return found;
}

/* 1 and the small dims if the file knows GRAPH, else 0 (and no params: the defaults). */
static int find_small_dims(const char *graph, int *nparams, const char *const **params)
{
    for (size_t i = 0; i < sizeof small_dims / sizeof small_dims[0]; i++)
        if (strcmp(small_dims[i].graph, graph) == 0) {
            *nparams = small_dims[i].nparams;
            *params = small_dims[i].params;
            return 1;
        }
    *nparams = 0;
    *params = NULL;
    return 0;
}

/* The request the AOT tests use for GRAPH: small dims if known, else the defaults. */
static kg_request request_for(const char *graph, const char *dtype, const char *unroll)
{
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = graph;
    r.dtype = dtype;
    r.unroll = unroll;
    find_small_dims(graph, &r.nparams, &r.params);
    return r;
}

/* kg_generate that returns NULL and a malloc'd *problem instead of failing the test. */
static kg_kernel *generate_st(const kg_request *r, char **problem, kg_status *status)
{
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(r, &k, &err);
    if (status)
        *status = st;
    if (st != KG_OK) {
        *problem = xprintf("kg_generate failed (status %d): %s", (int)st, err ? err : "?");
        free(err);
        return NULL;
    }
    return k;
}

static kg_kernel *generate(const kg_request *r, char **problem)
{
    return generate_st(r, problem, NULL);
}

static kg_kernel *generate_compiled(const kg_request *r, char **problem)
{
    kg_kernel *k = generate(r, problem);
    char *err = NULL;
    if (k && kg_compile(k, &err) != KG_OK) {
        *problem = xprintf("kg_compile failed: %s", err ? err : "?");
        free(err);
        kg_free(k);
        return NULL;
    }
    return k;
}

/* ---- compiler processes ---- */

typedef struct {
    char **argv;   /* malloc'd copies, NULL-terminated */
    char *log;     /* the child's stdout and stderr */
    pid_t pid;
    int running;
    int status;    /* exit code; 128+N for signal N; -1 if it could not be started */
    double seconds;
} job;

/* argv = FLAGS (NULL-terminated, the program first) followed by the NULL-terminated varargs. */
static void job_init(job *j, const char *log, const char *const *flags, ...)
{
    size_t n = 0, cap = 1;
    const char *a;
    va_list ap;
    memset(j, 0, sizeof *j);
    for (const char *const *f = flags; *f; f++)
        cap++;
    va_start(ap, flags);
    while (va_arg(ap, const char *) != NULL)
        cap++;
    va_end(ap);
    j->argv = calloc(cap, sizeof *j->argv);
    assert_non_null(j->argv);
    for (const char *const *f = flags; *f; f++)
        j->argv[n++] = xstrdup(*f);
    va_start(ap, flags);
    while ((a = va_arg(ap, const char *)) != NULL)
        j->argv[n++] = xstrdup(a);
    va_end(ap);
    j->log = xstrdup(log);
    j->status = -1;
}

static void job_free(job *j)
{
    for (char **a = j->argv; a && *a; a++)
        free(*a);
    free(j->argv);
    free(j->log);
    memset(j, 0, sizeof *j);
}

static int job_start(job *j)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, j->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    j->seconds = now_s();
    int rc = posix_spawnp(&j->pid, j->argv[0], &fa, NULL, j->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        FILE *f = fopen(j->log, "w");
        if (f) {
            fprintf(f, "cannot run %s: %s\n", j->argv[0], strerror(rc));
            fclose(f);
        }
        j->status = -1;
        j->seconds = 0;
        return -1;
    }
    j->running = 1;
    return 0;
}

/* Runs the jobs with at most MAX_PARALLEL of them at once; fills status and seconds. */
static void run_jobs(job *jobs, size_t n)
{
    size_t next = 0;
    int running = 0;
    while (next < n || running > 0) {
        while (running < MAX_PARALLEL && next < n)
            if (job_start(&jobs[next++]) == 0)
                running++;
        if (running == 0)
            continue;
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            assert_int_equal(errno, EINTR);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (jobs[i].running && jobs[i].pid == pid) {
                jobs[i].running = 0;
                jobs[i].seconds = now_s() - jobs[i].seconds;
                jobs[i].status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                running--;
            }
    }
}

/* NULL if the job succeeded, else a malloc'd message with its command line and log. */
static char *job_problem(const job *j)
{
    if (j->status == 0)
        return NULL;
    size_t len = 0;
    for (char **a = j->argv; *a; a++)
        len += strlen(*a) + 1;
    char *cmd = calloc(len + 1, 1);
    assert_non_null(cmd);
    for (char **a = j->argv; *a; a++) {
        strcat(cmd, *a);
        strcat(cmd, a[1] ? " " : "");
    }
    char *log = slurp(j->log, NULL);
    char *msg = xprintf("`%s` exited with status %d:\n%s", cmd, j->status,
                        log ? log : "(no output)");
    free(cmd);
    free(log);
    return msg;
}

/* ---- fixture ---- */

/* rm -r PATH (no symlinks are followed: lstat). */
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            char *child = malloc(len);
            if (child) {
                snprintf(child, len, "%s/%s", path, e->d_name);
                remove_tree(child);
                free(child);
            }
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    if (fx->dir[0])
        remove_tree(fx->dir);
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

/* Generates (and JIT-compiles if JIT) the case and writes its .h and .c into the variant's
   directory; sets c->problem. Small dims that the graph rejects as bad input (its dims were
   renamed) fall back to the defaults with a note, so that the table above going stale fails
   no test; any other failure is the case's problem. */
static void case_prepare(const fixture *fx, kcase *c, int jit)
{
    int dflt = c->variant == V_DEFAULT_NONE;
    kg_request r = request_for(c->graph, c->dtype, dflt ? "none" : NULL);
    kg_status st;
    char *err = NULL;
    if (dflt) {
        r.params = NULL;
        r.nparams = 0;
    }
    c->k = generate_st(&r, &c->problem, &st);
    if (!c->k && st == KG_EINPUT && r.nparams) {
        print_message("NOTE %s: small dims rejected (%s); using the default dims\n", c->graph,
                      c->problem);
        free(c->problem);
        c->problem = NULL;
        r.params = NULL;
        r.nparams = 0;
        c->k = generate(&r, &c->problem);
    }
    if (c->k && jit && kg_compile(c->k, &err) != KG_OK) {
        c->problem = xprintf("kg_compile failed: %s", err ? err : "?");
        free(err);
        err = NULL;
    }
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
static kcase *cases_make(const fixture *fx, const char *const *dt, int ndt, int jit, int *n)
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
                case_prepare(fx, c, jit);
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

/* ---- deterministic arguments ---- */

static int role_is_read(kg_role r)
{
    return r == KG_ROLE_INPUT || r == KG_ROLE_COTANGENT || r == KG_ROLE_TANGENT;
}

static uint64_t lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

static double lcg_uniform(uint64_t *s) { return (double)lcg_next(s) / 9007199254740992.0; }

/* Mean 0, variance 1 (Irwin-Hall of four uniforms, rescaled): "normal-ish". */
static double lcg_normalish(uint64_t *s)
{
    double u = lcg_uniform(s) + lcg_uniform(s) + lcg_uniform(s) + lcg_uniform(s);
    return (u - 2.0) * 1.7320508075688772;
}

static uint64_t seed_of(const char *s)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Arguments of one pass: args[0..n-1] as kg_arg_at says, args[n] the workspace (or NULL). */
typedef struct {
    int n;
    void **args;
} argset;

/* Inputs depend only on the tensor's file name, so every call and pass sees the same data;
   outputs and workspace start as the same 0xA5 pattern everywhere. */
static void argset_make(argset *s, const kg_kernel *k, kg_pass p)
{
    size_t es = kg_elem_size(k);
    s->n = kg_nargs(k, p);
    s->args = calloc((size_t)s->n + 1, sizeof *s->args);
    assert_non_null(s->args);
    for (int i = 0; i < s->n; i++) {
        const kg_arg *a = kg_arg_at(k, p, i);
        size_t count = a->count ? a->count : 1;
        unsigned char *buf = malloc(count * es);
        assert_non_null(buf);
        memset(buf, 0xA5, count * es);
        uint64_t seed = seed_of(a->file);
        int positive = a->init && strcmp(a->init, "positive") == 0;
        for (size_t e = 0; role_is_read(a->role) && e < count; e++) {
            double v = positive ? 0.5 + lcg_uniform(&seed) : lcg_normalish(&seed);
            if (es == 4) {
                float f = (float)v;
                memcpy(buf + e * es, &f, es);
            } else {
                memcpy(buf + e * es, &v, es);
            }
        }
        s->args[i] = buf;
    }
    size_t ws = kg_ws_size(k, p);
    if (ws) {
        s->args[s->n] = malloc(ws * es);
        assert_non_null(s->args[s->n]);
        memset(s->args[s->n], 0xA5, ws * es);
    }
}

static void argset_free(argset *s)
{
    for (int i = 0; s->args && i <= s->n; i++)
        free(s->args[i]);
    free(s->args);
    memset(s, 0, sizeof *s);
}

static double elem_value(const void *buf, size_t i, size_t es)
{
    if (es == 4) {
        float f;
        memcpy(&f, (const unsigned char *)buf + i * es, es);
        return f;
    }
    double d;
    memcpy(&d, (const unsigned char *)buf + i * es, es);
    return d;
}

static unsigned long long elem_bits(const void *buf, size_t i, size_t es)
{
    if (es == 4) {
        uint32_t u;
        memcpy(&u, (const unsigned char *)buf + i * es, es);
        return u;
    }
    uint64_t u;
    memcpy(&u, (const unsigned char *)buf + i * es, es);
    return u;
}

/* NULL if every output of the pass is bit-identical in A and B, else the first difference. */
static char *outputs_differ(const kg_kernel *k, kg_pass p, const argset *a, const argset *b,
                            const char *name_a, const char *name_b)
{
    size_t es = kg_elem_size(k);
    for (int i = 0; i < a->n; i++) {
        const kg_arg *arg = kg_arg_at(k, p, i);
        if (role_is_read(arg->role) || memcmp(a->args[i], b->args[i], arg->count * es) == 0)
            continue;
        size_t e = 0;
        while (memcmp((unsigned char *)a->args[i] + e * es, (unsigned char *)b->args[i] + e * es,
                      es) == 0)
            e++;
        return xprintf("%s: %s[%zu] differs: %s %.17g (0x%0*llx), %s %.17g (0x%0*llx)",
                       pass_names[p], arg->cname, e, name_a, elem_value(a->args[i], e, es),
                       (int)es * 2, elem_bits(a->args[i], e, es), name_b,
                       elem_value(b->args[i], e, es), (int)es * 2, elem_bits(b->args[i], e, es));
    }
    return NULL;
}

/* ---- 1. JIT and AOT give the same bits ---- */

typedef int (*entry_fn)(void *const *);

/* Writes BASE_thunk.c, built into the same .so: aot_thunk_<pass>(void *const *a) calls the
   generated function <name>_<pass> with a[i] cast to the type its kg_arg role implies (const
   for what the kernel reads), in kg_arg_at order, workspace last: the JIT's own entry points,
   compiled by gcc against the emitted header. Calling the typed functions through a
   dlsym'd pointer of another type (say, int (*)(void *, ...)) would be undefined behaviour. */
static char *write_thunk(const kcase *c)
{
    char *path = xprintf("%s_thunk.c", c->base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const char *T = kg_elem_size(c->k) == 4 ? "float" : "double";
    fprintf(f, "#include \"%s\"\n", kg_text(c->k, KG_TEXT_HEADER_FILE));
    for (int p = 0; p < KG_NPASSES; p++) {
        int n = kg_nargs(c->k, (kg_pass)p);
        fprintf(f, "int aot_thunk_%s(void *const *a);\n", pass_names[p]);
        fprintf(f, "int aot_thunk_%s(void *const *a)\n{\n    return %s_%s(", pass_names[p],
                kg_text(c->k, KG_TEXT_NAME), pass_names[p]);
        for (int i = 0; i < n; i++)
            fprintf(f, "(%s%s *)a[%d], ",
                    role_is_read(kg_arg_at(c->k, (kg_pass)p, i)->role) ? "const " : "", T, i);
        fprintf(f, "(%s *)a[%d]);\n}\n", T, n);
    }
    assert_int_equal(fclose(f), 0);
    return path;
}

static void *sym(void *lib, const char *name)
{
    dlerror();
    return dlsym(lib, name);
}

/* Checks that the .so exports the three functions the header names, calls every pass through
   the JIT and through the .so on the same inputs; NULL if return codes and outputs agree. */
static char *compare_jit_aot(const kcase *c, void *lib)
{
    entry_fn aot[KG_NPASSES];
    for (int p = 0; p < KG_NPASSES; p++) {
        char *fn = xprintf("%s_%s", kg_text(c->k, KG_TEXT_NAME), pass_names[p]);
        char *thunk = xprintf("aot_thunk_%s", pass_names[p]);
        void *named = sym(lib, fn), *t = sym(lib, thunk);
        free(thunk);
        if (!named || !t) {
            char *msg = xprintf("the .so does not export %s", fn);
            free(fn);
            return msg;
        }
        free(fn);
        memcpy(&aot[p], &t, sizeof t); /* ISO C has no object-to-function pointer cast */
    }
    for (int p = 0; p < KG_NPASSES; p++) {
        argset jit, so;
        argset_make(&jit, c->k, (kg_pass)p);
        argset_make(&so, c->k, (kg_pass)p);
        int rc_jit = kg_call(c->k, (kg_pass)p, jit.args);
        int rc_so = aot[p](so.args);
        if (rc_jit != 0 && rc_jit == rc_so)
            print_message("NOTE %s %s: %s returned %d (a domain check failed) in both builds\n",
                          c->graph, c->dtype, pass_names[p], rc_jit);
        char *msg = rc_jit != rc_so
                        ? xprintf("%s: JIT returned %d, AOT returned %d", pass_names[p], rc_jit,
                                  rc_so)
                        : outputs_differ(c->k, (kg_pass)p, &jit, &so, "JIT", "AOT");
        argset_free(&jit);
        argset_free(&so);
        if (msg)
            return msg;
    }
    return NULL;
}

static void bit_identical_jit_aot(void **state)
{
    fixture *fx = *state;
    int n;
    kcase *cs = cases_make(fx, dtypes, 2, 1, &n);
    char **thunks = calloc((size_t)n + 1, sizeof *thunks);
    char **sos = calloc((size_t)n + 1, sizeof *sos);
    assert_non_null(thunks);
    assert_non_null(sos);
    for (int i = 0; i < n; i++) {
        kcase *c = &cs[i];
        if (c->problem)
            continue;
        thunks[i] = write_thunk(c);
        sos[i] = xprintf("%s.so", c->base);
        char *log = xprintf("%s.so.log", c->base);
        job_init(&c->jobs[c->njobs++], log, gcc_shared, "-o", sos[i], c->c_path, thunks[i],
                 "-lm", (const char *)NULL);
        free(log);
    }
    cases_run_jobs(cs, n);
    for (int i = 0; i < n; i++) {
        kcase *c = &cs[i];
        if (c->problem)
            continue;
        void *lib = dlopen(sos[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char *e = dlerror();
            c->problem = xprintf("dlopen %s: %s", sos[i], e ? e : "?");
            continue;
        }
        c->problem = compare_jit_aot(c, lib);
        dlclose(lib);
    }
    for (int i = 0; i < n; i++) {
        free(thunks[i]);
        free(sos[i]);
    }
    free(thunks);
    free(sos);
    cases_report(cs, n, "forward, vjp, jvp bit-identical JIT vs gcc -O2 .so");
}

/* ---- 2. and 3. the emitted files compile cleanly ---- */

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
    kcase *cs = cases_make(fx, dtypes, 2, 0, &n);
    for (int i = 0; i < n; i++)
        if (!cs[i].problem) {
            add_compile_job(&cs[i], gcc_strict, "gcc");
            add_compile_job(&cs[i], clang_strict, "clang");
        }
    cases_run_jobs(cs, n);
    cases_report(cs, n, "no warnings under -std=c99 -Wall -Wextra -Wpedantic -Werror");
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
    kcase *cs = cases_make(fx, dtypes, 1, 0, &n);
    for (int i = 0; i < n; i++)
        if (!cs[i].problem)
            add_compile_job(&cs[i], arm_m4, "m4");
    cases_run_jobs(cs, n);
    cases_report(cs, n, "compiles for cortex-m4 hard-float -Werror");
}

/* ---- 4. generation is deterministic ---- */

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
    const char *const *small;
    int nsmall, failed = 0;
    int known = find_small_dims(graph, &nsmall, &small);
    known = known && small_dims_accepted(graph, small, nsmall);
    for (int d = 0; d < 2; d++)
        for (int u = 0; u < 3; u++)
            for (int dflt = 0; dflt < 2; dflt++) {
                if ((!dflt && !known) || (dflt && strcmp(unrolls[u], "full") == 0))
                    continue;
                kg_request r;
                memset(&r, 0, sizeof r);
                r.graph = graph;
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

/* ---- 5. one committed golden pair of emitted files ---- */

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

/* ---- 6. the unroll policies compute the same values ---- */

static void unroll_policies_agree_in_value(void **state)
{
    (void)state;
    static const char *const unrolls[] = {"auto", "full", "none"};
    const char *params[] = {"rows=3", "dim=37"};
    kg_kernel *k[3];
    for (int u = 0; u < 3; u++) {
        kg_request r;
        memset(&r, 0, sizeof r);
        r.graph = "layernorm";
        r.params = params;
        r.nparams = 2;
        r.dtype = "f64";
        r.unroll = unrolls[u];
        char *problem = NULL;
        k[u] = generate_compiled(&r, &problem);
        if (!k[u])
            fail_msg("unroll=%s: %s", unrolls[u], problem);
    }
    size_t compared = 0, identical = 0;
    double worst = 0;
    for (int p = 0; p < KG_NPASSES; p++) {
        argset s[3];
        for (int u = 0; u < 3; u++) {
            argset_make(&s[u], k[u], (kg_pass)p);
            assert_int_equal(kg_call(k[u], (kg_pass)p, s[u].args), 0);
        }
        for (int u = 1; u < 3; u++)
            for (int i = 0; i < s[0].n; i++) {
                const kg_arg *a = kg_arg_at(k[0], (kg_pass)p, i);
                assert_string_equal(a->cname, kg_arg_at(k[u], (kg_pass)p, i)->cname);
                for (size_t e = 0; !role_is_read(a->role) && e < a->count; e++) {
                    double x = elem_value(s[0].args[i], e, 8), y = elem_value(s[u].args[i], e, 8);
                    double scale = fmax(fabs(x), fabs(y));
                    double rel = scale > 0 ? fabs(x - y) / scale : 0;
                    compared++;
                    identical += memcmp(&x, &y, sizeof x) == 0;
                    worst = fmax(worst, rel);
                    if (rel > 1e-14)
                        fail_msg("%s: %s[%zu]: unroll=auto %.17g, unroll=%s %.17g (relative "
                                 "difference %.3g > 1e-14)", pass_names[p], a->cname, e, x,
                                 unrolls[u], y, rel);
                }
            }
        for (int u = 0; u < 3; u++)
            argset_free(&s[u]);
    }
    print_message("     layernorm rows=3 dim=37 f64: %zu output elements compared (full and none "
                  "against auto), %zu bit-identical, worst relative difference %.3g\n",
                  compared, identical, worst);
    for (int u = 0; u < 3; u++)
        kg_free(k[u]);
}

/* ---- 7. repeated JIT cycles ---- */

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
            argset s;
            argset_make(&s, k, (kg_pass)p);
            int rc = kg_call(k, (kg_pass)p, s.args);
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
        TIMED(bit_identical_jit_aot),
        TIMED(warning_free_strict),
        TIMED(cortex_m4),
        TIMED(deterministic_bytes),
        TIMED(golden_emitted_file),
        TIMED(unroll_policies_agree_in_value),
        TIMED(jit_cycle_no_leak),
    };
    return cmocka_run_group_tests_name("aot", tests, group_setup, group_teardown);
}
