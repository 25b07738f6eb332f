/* kg_aot.h: helpers shared by the tests that build emitted files with real compilers
 * (test_aot.c, test_identity.c). Include after <cmocka.h>: failures inside fail the test.
 *
 *   small_dims, request_for   the requests these tests use: small explicit dims per graph
 *   generate*                 kg_generate (+ kg_compile) returning a message instead of failing
 *   job, run_jobs             compilers and emulators as child processes (posix_spawnp, never a
 *                             shell), at most MAX_PARALLEL at once, output in a log file
 *   argset                    deterministic arguments of one pass (inputs depend only on the
 *                             tensor's file name), outputs_differ (first differing element)
 *   print_thunks              C entry points int f(void *const *a) calling a generated pass
 *   slurp, on_path, xprintf   small utilities (kg_test.h: kgt_remove_tree)
 */
#ifndef KG_AOT_H
#define KG_AOT_H

#include "kg_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kerngen.h"

extern char **environ;

#define MAX_PARALLEL 2 /* child processes at once (the machines have 2 cores) */

/* Small explicit dims for the graphs this file knows (others run at their defaults), and what
   the train pass trains (adam) and differentiates (wrt): every graph has all six passes. */
static const struct {
    const char *graph;
    const char *params[5];
    int nparams;
    const char *train, *wrt;
} small_dims[] = {
    {"batchnorm1d", {"c=3", "l=5"}, 2, "gamma,beta", "x"},
    {"batchnorm2d", {"c=3", "h=2", "w=3"}, 3, "gamma,beta", "x"},
    {"batchnorm3d", {"c=2", "d=2", "h=2", "w=3"}, 4, "gamma,beta", "x"},
    {"batchnorm_inference1d", {"c=3", "l=5"}, 2, "gamma,beta", "x"},
    {"batchnorm_inference2d", {"c=3", "h=2", "w=3"}, 3, "gamma,beta", "x"},
    {"batchnorm_inference3d", {"c=2", "d=2", "h=2", "w=3"}, 4, "gamma,beta", "x"},
    {"ffn", {"dmodel=4", "dff=6"}, 2, "w1,b1,w2,b2", "x"},
    {"groupnorm", {"b=2", "h=2", "w=2", "c=4", "groups=2"}, 5, "gamma,beta", "x"},
    {"layernorm", {"rows=3", "dim=5"}, 2, "gamma,beta", "x"},
    {"log_softmax", {"rows=3", "dim=5"}, 2, "x", NULL},
    {"mlp", {"seq=2", "dmodel=4", "dff=6"}, 3, "w1,b1,w2,b2", "x"},
    {"normalize_axis", {"shape=2x3x4", "axis=1"}, 2, "gamma,beta", "x"},
    {"postnorm_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3, "gamma,beta,b1,b2", "x"},
    {"prenorm_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3, "gamma,beta,b1,b2", "x"},
    {"rmsnorm", {"rows=3", "dim=5"}, 2, "gamma", "x"},
    {"seq_ffn", {"seq=2", "dmodel=4", "dff=6"}, 3, "w1,b1,w2,b2", "x"},
    {"softmax", {"rows=3", "dim=5"}, 2, "x", NULL},
    {"weightnorm", {"out=3", "in=5"}, 2, "g", "v"},
};

#define pass_names(p) kg_pass_name((kg_pass)(p))

/* ---- small helpers ---- */

#ifdef __GNUC__
__attribute__((format(printf, 1, 2)))
#endif
static inline char *xprintf(const char *fmt, ...)
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

static inline char *xstrdup(const char *s) { return xprintf("%s", s); }

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads a whole file, NUL-terminated; NULL if it cannot be read. The caller frees. */
static inline char *slurp(const char *path, size_t *len)
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
static inline int on_path(const char *prog)
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

/* The request the AOT tests use for GRAPH: small dims and the train pass if the table knows
   it, else the defaults. */
static inline kg_request request_for(const char *graph, const char *dtype, const char *unroll)
{
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = graph;
    r.dtype = dtype;
    r.unroll = unroll;
    for (size_t i = 0; i < sizeof small_dims / sizeof small_dims[0]; i++)
        if (strcmp(small_dims[i].graph, graph) == 0) {
            r.nparams = small_dims[i].nparams;
            r.params = small_dims[i].params;
            r.train = small_dims[i].train;
            r.wrt = small_dims[i].wrt;
            r.optimizer = "adam";
        }
    return r;
}

/* kg_generate that returns NULL and a malloc'd *problem instead of failing the test. */
static inline kg_kernel *generate_st(const kg_request *r, char **problem, kg_status *status)
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

static inline kg_kernel *generate(const kg_request *r, char **problem)
{
    return generate_st(r, problem, NULL);
}

static inline kg_kernel *generate_compiled(const kg_request *r, char **problem)
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

/* GRAPH at its small dims (SMALL; the defaults if small_dims does not list it) or at its
   default dims, with the optional EXTRA "NAME=VALUE" parameter and C name prefix NAME (NULL:
   the default name), unroll UNROLL and fma option FMA (NULL: the defaults). Small dims that the graph rejects as
   bad input (its dims were renamed) fall back to the defaults with a note, so that small_dims
   going stale fails no test. On failure: NULL, *problem (malloc'd) and *status say why. */
static inline kg_kernel *generate_case(const char *graph, const char *dtype, const char *unroll,
                                       const char *fma, int small, const char *extra,
                                       const char *name, kg_status *status, char **problem)
{
    kg_request r = request_for(graph, dtype, unroll);
    r.fma = fma;
    const char *params[8];
    int n = small ? r.nparams : 0;
    for (int i = 0; i < n && i < 7; i++)
        params[i] = r.params[i];
    if (extra)
        params[n++] = extra;
    r.params = params;
    r.nparams = n;
    r.name = name;
    kg_kernel *k = generate_st(&r, problem, status);
    if (!k && *status == KG_EINPUT && small && r.nparams > (extra ? 1 : 0)) {
        kg_status again;
        char *second = NULL;
        r.params = extra ? &extra : NULL;
        r.nparams = extra ? 1 : 0;
        k = generate_st(&r, &second, &again);
        if (k) {
            print_message("NOTE %s: small dims rejected (%s); using the default dims\n", graph,
                          *problem);
            free(*problem);
            *problem = NULL;
            *status = KG_OK;
        }
        free(second); /* the default dims fail too: the first message says why */
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
static inline void job_init(job *j, const char *log, const char *const *flags, ...)
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

/* Appends one argument to J's command line. */
static inline void job_add(job *j, const char *arg)
{
    size_t n = 0;
    while (j->argv[n])
        n++;
    j->argv = realloc(j->argv, (n + 2) * sizeof *j->argv);
    assert_non_null(j->argv);
    j->argv[n] = xstrdup(arg);
    j->argv[n + 1] = NULL;
}

static inline void job_free(job *j)
{
    for (char **a = j->argv; a && *a; a++)
        free(*a);
    free(j->argv);
    free(j->log);
    memset(j, 0, sizeof *j);
}

static inline int job_start(job *j)
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
static inline void run_jobs(job *jobs, size_t n)
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
static inline char *job_problem(const job *j)
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

/* ---- deterministic arguments ---- */


static inline uint64_t lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

static inline double lcg_uniform(uint64_t *s) { return (double)lcg_next(s) / 9007199254740992.0; }

/* Mean 0, variance 1 (Irwin-Hall of four uniforms, rescaled): "normal-ish". */
static inline double lcg_normalish(uint64_t *s)
{
    double u = lcg_uniform(s) + lcg_uniform(s) + lcg_uniform(s) + lcg_uniform(s);
    return (u - 2.0) * 1.7320508075688772;
}

static inline uint64_t seed_of(const char *s)
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
static inline void argset_make(argset *s, const kg_kernel *k, kg_pass p)
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
        /* train's opt: lr, beta1, beta2, eps, weight_decay, step for adam (sgd and momentum read
           a prefix: finite and positive too) */
        static const double hyper[] = {1e-2, 0.9, 0.999, 1e-8, 1e-2, 3};
        for (size_t e = 0; kg_role_reads(a->role) && e < count; e++) {
            double v = a->role == KG_ROLE_HYPER && e < sizeof hyper / sizeof hyper[0] ? hyper[e]
                       : positive                                                    ? 0.5 + lcg_uniform(&seed)
                                                                                     : lcg_normalish(&seed);
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

static inline void argset_free(argset *s)
{
    for (int i = 0; s->args && i <= s->n; i++)
        free(s->args[i]);
    free(s->args);
    memset(s, 0, sizeof *s);
}

static inline double elem_value(const void *buf, size_t i, size_t es)
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

static inline unsigned long long elem_bits(const void *buf, size_t i, size_t es)
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
static inline char *outputs_differ(const kg_kernel *k, kg_pass p, const argset *a, const argset *b,
                            const char *name_a, const char *name_b)
{
    size_t es = kg_elem_size(k);
    for (int i = 0; i < a->n; i++) {
        const kg_arg *arg = kg_arg_at(k, p, i);
        if (!kg_role_writes(arg->role) || memcmp(a->args[i], b->args[i], arg->count * es) == 0)
            continue;
        size_t e = 0;
        while (memcmp((unsigned char *)a->args[i] + e * es, (unsigned char *)b->args[i] + e * es,
                      es) == 0)
            e++;
        return xprintf("%s: %s[%zu] differs: %s %.17g (0x%0*llx), %s %.17g (0x%0*llx)",
                       pass_names(p), arg->cname, e, name_a, elem_value(a->args[i], e, es),
                       (int)es * 2, elem_bits(a->args[i], e, es), name_b,
                       elem_value(b->args[i], e, es), (int)es * 2, elem_bits(b->args[i], e, es));
    }
    return NULL;
}
/* Writes, for every pass of K, `STORAGE int PREFIX<pass>(void *const *a)` calling the generated
   function <name>_<pass> with a[i] in kg_arg_at order, workspace last (the JIT's own entry
   points, compiled against the emitted header). a[i] converts implicitly to each typed
   parameter; calling the typed function through a pointer of another type would be undefined
   behaviour. STORAGE is "" or "static ". */
static inline void print_thunks(FILE *f, const kg_kernel *k, const char *storage,
                                const char *prefix)
{
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!kg_has_pass(k, (kg_pass)p))
            continue;
        int n = kg_nargs(k, (kg_pass)p);
        fprintf(f, "%sint %s%s(void *const *a);\n", storage, prefix, pass_names(p));
        fprintf(f, "%sint %s%s(void *const *a)\n{\n    return %s_%s(", storage, prefix,
                pass_names(p), kg_text(k, KG_TEXT_NAME), pass_names(p));
        for (int i = 0; i < n; i++)
            fprintf(f, "a[%d], ", i);
        fprintf(f, "a[%d]);\n}\n", n);
    }
}

#endif
