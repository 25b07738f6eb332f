/*
 * test_cli.c - cmocka tests for the kerngen command-line tool (gen/kerngen.c), run as a child
 * process exactly as a user would run it.
 *
 * The contract under test: exit 0 on success, 1 on a failed check, 2 on bad usage or bad input
 * with exactly one stderr line naming the culprit (option, parameter, input name and/or file),
 * 3 on an internal error; and no output files unless everything succeeded (the --out directory
 * is left exactly as it was: no partial files, no temporary files).
 *
 *   usage    no arguments, unknown command, unknown options, options missing their value, bad
 *            --dtype/--pass/--unroll/--semantics/--vjp/--dump-ir/--seed values, extra
 *            positionals, list with arguments, missing GRAPH or --out, --help/-h, --version
 *   params   unknown graph and parameter, malformed NAME=VALUE, bad dims and eps, repeats
 *   npy      run's --in handling: missing, unknown and repeated names, malformed --in, missing,
 *            truncated and non-.npy files, wrong shape, wrong dtype, vjp/jvp extra inputs
 *            (plus --out naming a file, and outputs that cannot be put in place: all or nothing)
 *   domain   layernorm with eps=0 and a constant row
 *   success  run forward/vjp/jvp and emit write exactly the expected files
 *   const    --const NAME=FILE for emit and run: the file checked as --in's, names checked;
 *            a baked input computes the same bits and leaves the signatures
 *
 * Bare `kerngen` is the one usage error allowed more than one line: it prints the usage text.
 *
 * The binary is $KERNGEN_BIN (default build/kerngen). Every test gets a fresh mkdtemp()
 * directory under /tmp holding in/ (valid layernorm rows=3 dim=5 inputs in both dtypes),
 * an empty out/ and cap/ (the captured stdout and stderr); kerngen runs with that directory as
 * its working directory and /dev/null as stdin. The teardown removes the directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kg_npy.h"
#include "kg_test.h"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

enum { ROWS = 3, DIM = 5, MAX_ARGS = 64, TIMEOUT_S = 30 };

static char *g_bin; /* absolute path of the kerngen binary */

typedef struct Fixture Fixture;
/* Runs in the child between fork and exec (it keeps the pid that kerngen will have). */
static void (*g_child_setup)(Fixture *fx);

/* ---- fixture: a temp directory, plus every allocation of the test (freed at teardown, so a
   failed assertion, which longjmps out of the test, leaks nothing) ---- */

struct Fixture {
    char *root, *in, *out, *cap;
    void **allocs;
    size_t nallocs, cap_allocs;
};

static void *keep(Fixture *fx, void *p)
{
    assert_non_null(p);
    if (fx->nallocs == fx->cap_allocs) {
        size_t n = fx->cap_allocs ? 2 * fx->cap_allocs : 64;
        void **a = realloc(fx->allocs, n * sizeof *a);
        assert_non_null(a);
        fx->allocs = a;
        fx->cap_allocs = n;
    }
    fx->allocs[fx->nallocs++] = p;
    return p;
}

static char *vfmt(const char *f, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, f, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, f, ap);
    return s;
}

static char *fmt_raw(const char *f, ...) PRINTF_LIKE(1, 2);
static char *fmt_raw(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = vfmt(f, ap);
    va_end(ap);
    return s;
}

/* A formatted string owned by the fixture. */
static char *fmt(Fixture *fx, const char *f, ...) PRINTF_LIKE(2, 3);
static char *fmt(Fixture *fx, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = vfmt(f, ap);
    va_end(ap);
    return keep(fx, s);
}

/* The names in a directory (hidden ones included), sorted, separated by single spaces;
   "" for an empty directory, "<missing>" when it does not exist. */
static const char *listing(Fixture *fx, const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return "<missing>";
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(names[i]->d_name) + 1;
    char *s = keep(fx, calloc(len, 1));
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
            if (*s)
                strcat(s, " ");
            strcat(s, nm); /* fits: len counts every name plus a separator */
        }
        free(names[i]);
    }
    free(names);
    return s;
}

/* ---- .npy inputs ---- */

/* Test data: x-like tensors are [ROWS, DIM], the per-feature ones [DIM]. */
static const char *const ALL_INPUTS[] = {"x", "gamma", "beta", "y.cotangent",
                                         "x.tangent", "gamma.tangent", "beta.tangent"};

static int is_matrix(const char *name)
{
    return strcmp(name, "x") == 0 || strcmp(name, "y.cotangent") == 0 || strcmp(name, "x.tangent") == 0;
}

static double value(const char *name, size_t i)
{
    if (strcmp(name, "gamma") == 0)
        return 1.0 + 0.125 * (double)i;
    return sin(1.7 * (double)i + (double)strlen(name)) + 0.25 * (double)(i % 3);
}

/* Writes path as a .npy of the given dtype/shape holding data (double values). */
static void write_npy(const char *path, kg_npy_dtype dt, int ndim, const size_t *shape, const double *data)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= shape[d];
    void *buf = malloc(count * (size_t)dt + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < count; i++) {
        if (dt == KG_NPY_F64)
            ((double *)buf)[i] = data[i];
        else
            ((float *)buf)[i] = (float)data[i];
    }
    char err[512];
    int rc = kg_npy_write(path, dt, ndim, shape, buf, err, sizeof err);
    free(buf);
    if (rc != 0)
        fail_msg("%s", err);
}

/* Writes a test input with the given shape (values from value()). */
static void write_input(const char *path, const char *name, kg_npy_dtype dt, int ndim, const size_t *shape)
{
    double data[64];
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= shape[d];
    assert_true(count <= sizeof data / sizeof data[0]);
    for (size_t i = 0; i < count; i++)
        data[i] = value(name, i);
    write_npy(path, dt, ndim, shape, data);
}

static const char *dtype_name(kg_npy_dtype dt) { return dt == KG_NPY_F64 ? "f64" : "f32"; }

/* The path of the valid input NAME of dtype "f32"/"f64" written by the setup. */
static const char *input_path(Fixture *fx, const char *name, const char *dtype)
{
    return fmt(fx, "%s/%s.%s.npy", fx->in, name, dtype);
}

static void write_file(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---- setup and teardown ---- */

static int group_setup(void **state)
{
    (void)state;
    const char *bin = getenv("KERNGEN_BIN");
    if (!bin || !*bin)
        bin = "build/kerngen";
    if (bin[0] == '/') {
        g_bin = fmt_raw("%s", bin);
    } else { /* the tests chdir into their temp directory: make the path absolute */
        char *cwd = getcwd(NULL, 0); /* glibc allocates */
        g_bin = cwd ? fmt_raw("%s/%s", cwd, bin) : NULL;
        free(cwd);
    }
    if (!g_bin || access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_cli: kerngen binary not found (set KERNGEN_BIN)\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(g_bin);
    return 0;
}

static int teardown(void **state);

static int setup(void **state)
{
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    *state = fx;
    fx->root = keep(fx, strdup("/tmp/kg_cli_test_XXXXXX"));
    if (!mkdtemp(fx->root)) {
        fx->root = NULL;
        teardown(state);
        return -1;
    }
    fx->in = fmt(fx, "%s/in", fx->root);
    fx->out = fmt(fx, "%s/out", fx->root);
    fx->cap = fmt(fx, "%s/cap", fx->root);
    if (mkdir(fx->in, 0777) || mkdir(fx->out, 0777) || mkdir(fx->cap, 0777)) {
        teardown(state);
        return -1;
    }
    static const kg_npy_dtype dts[] = {KG_NPY_F32, KG_NPY_F64};
    for (size_t i = 0; i < sizeof ALL_INPUTS / sizeof ALL_INPUTS[0]; i++)
        for (size_t t = 0; t < 2; t++) {
            const char *name = ALL_INPUTS[i];
            size_t shape[2] = {ROWS, DIM};
            const size_t *s = is_matrix(name) ? shape : shape + 1;
            write_input(input_path(fx, name, dtype_name(dts[t])), name, dts[t], is_matrix(name) ? 2 : 1, s);
        }
    return 0;
}

static int teardown(void **state)
{
    Fixture *fx = *state;
    if (!fx)
        return 0;
    if (fx->root)
        kgt_remove_tree(fx->root);
    for (size_t i = 0; i < fx->nallocs; i++)
        free(fx->allocs[i]);
    free(fx->allocs);
    free(fx);
    *state = NULL;
    return 0;
}

/* ---- running kerngen ---- */

typedef struct {
    const char *cmd; /* the command line, for messages */
    int code;        /* exit status, or 128 + signal */
    const char *out; /* captured stdout */
    const char *err; /* captured stderr */
} Result;

typedef struct {
    const char *v[MAX_ARGS + 2]; /* argv[0], arguments, NULL */
    int n;
} Args;

static void push(Args *a, const char *s)
{
    assert_true(a->n < MAX_ARGS);
    a->v[1 + a->n++] = s;
}

static void push_va(Args *a, va_list ap)
{
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        push(a, s);
}

static const char *slurp(Fixture *fx, const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *b = realloc(buf, cap * 2);
            if (!b)
                free(buf);
            assert_non_null(b);
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    buf[n] = 0;
    return keep(fx, buf);
}

/* Runs kerngen with a->v[1..n] in fx->root, capturing stdout and stderr into cap/. */
static Result spawn(Fixture *fx, Args *a)
{
    const char *out_path = fmt(fx, "%s/stdout", fx->cap), *err_path = fmt(fx, "%s/stderr", fx->cap);
    a->v[0] = g_bin;
    a->v[1 + a->n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
            chdir(fx->root) != 0)
            _exit(126);
        if (g_child_setup)
            g_child_setup(fx);
        alarm(TIMEOUT_S); /* survives execv: a hanging kerngen dies of SIGALRM */
        execv(g_bin, (char *const *)a->v);
        fprintf(stderr, "test_cli: cannot execute %s: %s\n", g_bin, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    Result r;
    r.cmd = "kerngen";
    for (int i = 1; i <= a->n; i++)
        r.cmd = fmt(fx, "%s '%s'", r.cmd, a->v[i]);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(fx, out_path);
    r.err = slurp(fx, err_path);
    return r;
}

/* kerngen ARG... (NULL-terminated). */
static Result kg(Fixture *fx, ...)
{
    Args a = {{0}, 0};
    va_list ap;
    va_start(ap, fx);
    push_va(&a, ap);
    va_end(ap);
    return spawn(fx, &a);
}
#define KG(fx, ...) kg((fx), __VA_ARGS__, (const char *)NULL)

/* Whether the pass reads input NAME. */
static int pass_reads(const char *pass, const char *name)
{
    if (strcmp(name, "y.cotangent") == 0)
        return strcmp(pass, "vjp") == 0;
    if (strstr(name, ".tangent"))
        return strcmp(pass, "jvp") == 0;
    return 1;
}

/* kerngen run layernorm rows=3 dim=5 --dtype DTYPE --pass PASS --in NAME=FILE... EXTRA...
   --out OUT, with a valid --in for every input of the pass except `omit` (may be NULL). */
static Result run_ln(Fixture *fx, const char *dtype, const char *pass, const char *omit, ...)
{
    Args a = {{0}, 0};
    push(&a, "run");
    push(&a, "layernorm");
    push(&a, "rows=3");
    push(&a, "dim=5");
    push(&a, "--dtype");
    push(&a, dtype);
    push(&a, "--pass");
    push(&a, pass);
    for (size_t i = 0; i < sizeof ALL_INPUTS / sizeof ALL_INPUTS[0]; i++) {
        const char *name = ALL_INPUTS[i];
        if (pass_reads(pass, name) && (!omit || strcmp(name, omit) != 0)) {
            push(&a, "--in");
            push(&a, fmt(fx, "%s=%s", name, input_path(fx, name, dtype)));
        }
    }
    va_list ap;
    va_start(ap, omit);
    push_va(&a, ap);
    va_end(ap);
    push(&a, "--out");
    push(&a, fx->out);
    return spawn(fx, &a);
}
#define RUN_LN(fx, dtype, pass, omit, ...) run_ln((fx), (dtype), (pass), (omit), __VA_ARGS__, (const char *)NULL)
#define RUN_LN0(fx, dtype, pass, omit) run_ln((fx), (dtype), (pass), (omit), (const char *)NULL)

/* ---- assertions ---- */

static void show(const Result *r)
{
    print_message("  command: %s\n  exit %d\n  stdout: %s\n  stderr: %s\n", r->cmd, r->code, r->out, r->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void assert_contains_at(int line, const Result *r, const char *text, const char *needle)
{
    if (!strstr(text, needle)) {
        show(r);
        fail_msg("line %d: expected the output to contain '%s'", line, needle);
    }
}
#define assert_contains(r, text, needle) assert_contains_at(__LINE__, (r), (text), (needle))

/* Exit 2, nothing on stdout, exactly one line on stderr that contains every needle
   (NULL-terminated list). */
static void assert_bad_input(int line, const Result *r, ...)
{
    if (r->code != 2 || r->out[0] != 0 || count_lines(r->err) != 1 || r->err[strlen(r->err) - 1] != '\n') {
        show(r);
        fail_msg("line %d: expected exit 2, empty stdout and one line on stderr", line);
    }
    va_list ap;
    va_start(ap, r);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        assert_contains_at(line, r, r->err, needle);
    va_end(ap);
}
#define ASSERT_BAD(r, ...) assert_bad_input(__LINE__, &(r), __VA_ARGS__, (const char *)NULL)

/* Nothing written: out/ is empty and the working directory holds only what the setup made. */
static void assert_no_output(Fixture *fx)
{
    assert_string_equal(listing(fx, fx->out), "");
    assert_string_equal(listing(fx, fx->root), "cap in out");
}

static void assert_ok_at(int line, const Result *r)
{
    if (r->code != 0) {
        show(r);
        fail_msg("line %d: expected exit 0", line);
    }
}
#define assert_ok(r) assert_ok_at(__LINE__, (r))

/* ==== usage ==== */

static void test_no_arguments(void **state)
{
    Fixture *fx = *state;
    Args a = {{0}, 0};
    Result r = spawn(fx, &a);
    assert_int_equal(r.code, 2);
    assert_string_equal(r.out, "");
    assert_contains(&r, r.err, "usage: kerngen");
    assert_no_output(fx);
}

static void test_unknown_command(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "frobnicate", "layernorm");
    ASSERT_BAD(r, "unknown command", "'frobnicate'");
    assert_no_output(fx);
}

static void test_unknown_option(void **state)
{
    Fixture *fx = *state;
    static const char *const cmds[] = {"list", "emit", "run", "check", "dot"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        Result r = KG(fx, cmds[i], "layernorm", "--bogus", "--out", fx->out);
        ASSERT_BAD(r, "unknown option", "'--bogus'");
        r = KG(fx, cmds[i], "layernorm", "--bogus=1", "--out", fx->out);
        ASSERT_BAD(r, "unknown option", "--bogus");
    }
    /* a prefix of a real option, and options that belong to other commands */
    Result r = KG(fx, "run", "layernorm", "--dtyp", "f64", "--out", fx->out);
    ASSERT_BAD(r, "unknown option", "'--dtyp'");
    r = KG(fx, "check", "layernorm", "--dtype", "f64");
    ASSERT_BAD(r, "unknown option", "'--dtype'");
    r = KG(fx, "dot", "layernorm", "--out", fx->out);
    ASSERT_BAD(r, "unknown option", "'--out'");
    r = KG(fx, "emit", "layernorm", "--in", "x=x.npy", "--out", fx->out);
    ASSERT_BAD(r, "unknown option", "'--in'");
    r = KG(fx, "list", "--dtype", "f64");
    ASSERT_BAD(r, "unknown option", "'--dtype'");
    assert_no_output(fx);
}

static void test_option_missing_value(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "run", "layernorm", "--dtype");
    ASSERT_BAD(r, "'--dtype'", "needs a value");
    r = KG(fx, "run", "layernorm", "--out", fx->out, "--in");
    ASSERT_BAD(r, "'--in'", "needs a value");
    r = KG(fx, "emit", "layernorm", "--out");
    ASSERT_BAD(r, "'--out'", "needs a value");
    r = KG(fx, "check", "layernorm", "--seed");
    ASSERT_BAD(r, "'--seed'", "needs a value");
    r = KG(fx, "dot", "layernorm", "--pass");
    ASSERT_BAD(r, "'--pass'", "needs a value");
    assert_no_output(fx);
}

static void test_bad_dtype(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f16", "forward", NULL);
    ASSERT_BAD(r, "--dtype", "'f16'");
    r = KG(fx, "emit", "layernorm", "--dtype", "float", "--out", fx->out);
    ASSERT_BAD(r, "--dtype", "'float'");
    r = KG(fx, "emit", "layernorm", "--dtype=", "--out", fx->out);
    ASSERT_BAD(r, "--dtype");
    assert_no_output(fx);
}

static void test_bad_pass(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "backward", NULL);
    ASSERT_BAD(r, "--pass", "'backward'");
    r = KG(fx, "dot", "layernorm", "--pass", "backward");
    ASSERT_BAD(r, "--pass", "'backward'");
    assert_no_output(fx);
}

static void test_bad_unroll(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN(fx, "f64", "forward", NULL, "--unroll", "some");
    ASSERT_BAD(r, "--unroll", "'some'");
    r = KG(fx, "emit", "layernorm", "--unroll", "some", "--out", fx->out);
    ASSERT_BAD(r, "--unroll", "'some'");
    r = KG(fx, "check", "layernorm", "--unroll", "some");
    ASSERT_BAD(r, "--unroll", "'some'");
    assert_no_output(fx);
}

static void test_bad_semantics(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN(fx, "f64", "forward", NULL, "--semantics", "jax");
    ASSERT_BAD(r, "--semantics", "'jax'");
    r = KG(fx, "emit", "layernorm", "--semantics", "jax", "--out", fx->out);
    ASSERT_BAD(r, "--semantics", "'jax'");
    r = KG(fx, "check", "layernorm", "--semantics", "jax");
    ASSERT_BAD(r, "--semantics", "'jax'");
    assert_no_output(fx);
}

/* The message must name the option the user typed (--vjp / --jvp), not an internal field.
   (Regression: it once said "--vjp-form: 'tape' is not one of derived, closed".) */
static void test_bad_vjp_jvp_form(void **state)
{
    Fixture *fx = *state;
    static const char *const opts[] = {"--vjp", "--jvp"};
    for (size_t i = 0; i < 2; i++) {
        Result r = KG(fx, "emit", "layernorm", opts[i], "tape", "--out", fx->out);
        ASSERT_BAD(r, opts[i], "'tape'");
        char *internal = fmt(fx, "%s-form", opts[i]); /* no such option */
        if (strstr(r.err, internal)) {
            show(&r);
            fail_msg("the message names '%s', which is not an option of kerngen", internal);
        }
    }
    assert_no_output(fx);
}

/* --dump-ir takes forward|vjp|jvp|simplify; anything else is bad usage.
   (Regression: an unknown value was once ignored silently, exit 0 and files written.) */
static void test_bad_dump_ir(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "--dump-ir", "bogus", "--out", fx->out);
    ASSERT_BAD(r, "--dump-ir", "'bogus'");
    assert_no_output(fx);
}

/* --fma off|on: on writes fmaf and says so in the name; check runs the fused kernels' checks;
   anything else is bad usage. */
static void test_fma_option(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "rows=2", "dim=3", "--fma", "yes", "--out", fx->out);
    ASSERT_BAD(r, "--fma", "'yes'");
    assert_no_output(fx);
    r = KG(fx, "emit", "layernorm", "rows=2", "dim=3", "--fma", "on", "--out", fx->out);
    assert_ok(&r);
    const char *c = slurp(fx, fmt(fx, "%s/layernorm_2x3_fma_f32.c", fx->out));
    if (!c || !strstr(c, "fmaf(") || !strstr(c, "fma=on"))
        fail_msg("layernorm_2x3_fma_f32.c: no fmaf call or no fma=on in its banner");
    r = KG(fx, "check", "layernorm", "rows=2", "dim=3", "--fma", "on");
    assert_ok(&r);
}

/* strtoul skips leading blanks and then accepts a sign: " -1" is ULONG_MAX to it. */
static void test_bad_seed(void **state)
{
    Fixture *fx = *state;
    static const char *const bad[] = {"abc", "", "1x", "-1", "+1", "18446744073709551616", " -1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Result r = KG(fx, "check", "layernorm", "rows=2", "dim=3", "--seed", bad[i]);
        ASSERT_BAD(r, "--seed", fmt(fx, "'%s'", bad[i]));
    }
    assert_no_output(fx);
}

static void test_extra_positional(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN(fx, "f64", "forward", NULL, "extra");
    ASSERT_BAD(r, "'extra'");
    static const char *const cmds[] = {"emit", "check", "dot"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        r = KG(fx, cmds[i], "layernorm", "extra");
        ASSERT_BAD(r, "unexpected argument", "'extra'");
    }
    assert_no_output(fx);
}

static void test_list_with_arguments(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "list", "layernorm");
    ASSERT_BAD(r, "'layernorm'");
    r = KG(fx, "list", "rows=3");
    ASSERT_BAD(r, "'rows=3'");
    assert_no_output(fx);
}

static void test_run_without_out(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--in",
                  fmt(fx, "x=%s", input_path(fx, "x", "f64")), "--in",
                  fmt(fx, "gamma=%s", input_path(fx, "gamma", "f64")), "--in",
                  fmt(fx, "beta=%s", input_path(fx, "beta", "f64")));
    ASSERT_BAD(r, "--out");
    assert_no_output(fx);
    assert_null(strstr(listing(fx, fx->in), "y.npy"));
}

static void test_missing_graph(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "--out", fx->out);
    ASSERT_BAD(r, "missing GRAPH");
    r = KG(fx, "run", "--out", fx->out);
    ASSERT_BAD(r, "missing GRAPH");
    r = KG(fx, "check", "--seed", "3");
    ASSERT_BAD(r, "missing GRAPH");
    r = KG(fx, "dot", "--pass", "vjp");
    ASSERT_BAD(r, "missing GRAPH");
    r = KG(fx, "emit", "rows=3");
    ASSERT_BAD(r, "missing GRAPH");
    assert_no_output(fx);
}

static void test_help(void **state)
{
    Fixture *fx = *state;
    static const char *const cmds[] = {"list", "emit", "run", "check", "dot"};
    static const char *const flags[] = {"--help", "-h"};
    for (size_t f = 0; f < 2; f++) {
        Result r = KG(fx, flags[f]);
        assert_ok(&r);
        assert_contains(&r, r.out, "usage:");
        assert_string_equal(r.err, "");
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            r = KG(fx, cmds[i], flags[f]);
            assert_ok(&r);
            assert_contains(&r, r.out, "usage:");
            assert_contains(&r, r.out, cmds[i]);
            assert_string_equal(r.err, "");
            /* --help wins over a GRAPH given before it */
            r = KG(fx, cmds[i], "layernorm", flags[f]);
            assert_ok(&r);
            assert_contains(&r, r.out, "usage:");
        }
    }
    assert_no_output(fx);
}

static void test_version(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "--version");
    assert_ok(&r);
    assert_contains(&r, r.out, "kerngen ");
    assert_int_equal(count_lines(r.out), 1);
    assert_string_equal(r.err, "");
}

/* ==== graph and parameters ==== */

static void test_unknown_graph(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "nosuchgraph", "--out", fx->out);
    ASSERT_BAD(r, "'nosuchgraph'", "layernorm");
    r = KG(fx, "dot", "nosuchgraph");
    ASSERT_BAD(r, "'nosuchgraph'", "layernorm");
    r = KG(fx, "check", "nosuchgraph");
    ASSERT_BAD(r, "'nosuchgraph'", "layernorm");
    r = KG(fx, "run", "nosuchgraph", "--in", fmt(fx, "x=%s", input_path(fx, "x", "f32")), "--out", fx->out);
    ASSERT_BAD(r, "'nosuchgraph'", "layernorm");
    assert_no_output(fx);
}

static void test_unknown_param(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "rows=3", "width=5", "--out", fx->out);
    ASSERT_BAD(r, "'width'", "rows", "dim", "eps");
    r = RUN_LN(fx, "f64", "forward", NULL, "width=5");
    ASSERT_BAD(r, "'width'", "rows", "dim", "eps");
    assert_no_output(fx);
}

static void test_malformed_param(void **state)
{
    Fixture *fx = *state;
    static const char *const bad[] = {"rows", "rows=", "=3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *quoted = fmt(fx, "'%s'", bad[i]);
        Result r = KG(fx, "emit", "layernorm", bad[i], "--out", fx->out);
        ASSERT_BAD(r, quoted);
        r = RUN_LN(fx, "f64", "forward", NULL, bad[i]);
        ASSERT_BAD(r, quoted);
    }
    assert_no_output(fx);
}

static void test_bad_dims(void **state)
{
    Fixture *fx = *state;
    static const char *const bad[] = {"0", "-1", "1.5", "abc", "1000000000", "", "3x", "1e3"};
    static const char *const dims[] = {"rows", "dim"};
    for (size_t d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            const char *p = fmt(fx, "%s=%s", dims[d], bad[i]);
            Result r = KG(fx, "emit", "layernorm", p, "--out", fx->out);
            ASSERT_BAD(r, p);
        }
    Result r = KG(fx, "run", "layernorm", "rows=0", "dim=5", "--dtype", "f64", "--in",
                  fmt(fx, "x=%s", input_path(fx, "x", "f64")), "--out", fx->out);
    ASSERT_BAD(r, "rows=0");
    r = KG(fx, "check", "layernorm", "dim=-1");
    ASSERT_BAD(r, "dim=-1");
    assert_no_output(fx);
}

static void test_bad_eps(void **state)
{
    Fixture *fx = *state;
    static const char *const bad[] = {"eps=-1", "eps=nan", "eps=inf", "eps=-inf", "eps=abc", "eps=1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Result r = KG(fx, "emit", "layernorm", bad[i], "--out", fx->out);
        ASSERT_BAD(r, bad[i]);
        r = RUN_LN(fx, "f64", "forward", NULL, bad[i]);
        ASSERT_BAD(r, bad[i]);
    }
    assert_no_output(fx);
}

static void test_param_twice(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "rows=3", "rows=4", "--out", fx->out);
    ASSERT_BAD(r, "'rows'", "twice");
    r = KG(fx, "emit", "layernorm", "eps=0.1", "eps=0.1", "--out", fx->out);
    ASSERT_BAD(r, "'eps'", "twice");
    r = RUN_LN(fx, "f64", "forward", NULL, "dim=5");
    ASSERT_BAD(r, "'dim'", "twice");
    assert_no_output(fx);
}

/* ==== run: .npy inputs ==== */

static void test_in_missing(void **state)
{
    Fixture *fx = *state;
    static const char *const names[] = {"x", "gamma", "beta"};
    for (size_t i = 0; i < 3; i++) {
        Result r = RUN_LN0(fx, "f64", "forward", names[i]);
        ASSERT_BAD(r, fmt(fx, "--in %s=", names[i]), "missing");
    }
    assert_no_output(fx);
}

static void test_in_unknown_name(void **state)
{
    Fixture *fx = *state;
    const char *file = input_path(fx, "x", "f64");
    Result r = RUN_LN(fx, "f64", "forward", NULL, "--in", fmt(fx, "z=%s", file));
    ASSERT_BAD(r, "--in z", "x gamma beta");
    /* an output, and an input of another pass, are not inputs of the forward pass */
    r = RUN_LN(fx, "f64", "forward", NULL, "--in", fmt(fx, "y=%s", file));
    ASSERT_BAD(r, "--in y");
    r = RUN_LN(fx, "f64", "forward", NULL, "--in", fmt(fx, "y.cotangent=%s", file));
    ASSERT_BAD(r, "--in y.cotangent");
    assert_no_output(fx);
}

static void test_in_twice(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN(fx, "f64", "forward", NULL, "--in", fmt(fx, "x=%s", input_path(fx, "x", "f64")));
    ASSERT_BAD(r, "--in x", "twice");
    r = RUN_LN(fx, "f64", "forward", NULL, "--in", fmt(fx, "gamma=%s", input_path(fx, "beta", "f64")));
    ASSERT_BAD(r, "--in gamma", "twice");
    assert_no_output(fx);
}

static void test_in_without_equals(void **state)
{
    Fixture *fx = *state;
    const char *file = input_path(fx, "x", "f64");
    Result r = RUN_LN(fx, "f64", "forward", "x", "--in", file);
    ASSERT_BAD(r, file, "NAME=FILE");
    r = RUN_LN(fx, "f64", "forward", "x", "--in", "x=");
    ASSERT_BAD(r, "'x='", "NAME=FILE");
    r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "=%s", file));
    ASSERT_BAD(r, file, "NAME=FILE");
    assert_no_output(fx);
}

static void test_in_nonexistent_file(void **state)
{
    Fixture *fx = *state;
    const char *file = fmt(fx, "%s/no_such_file.npy", fx->in);
    Result r = RUN_LN(fx, "f64", "forward", "gamma", "--in", fmt(fx, "gamma=%s", file));
    ASSERT_BAD(r, file);
    r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", fx->in)); /* a directory */
    ASSERT_BAD(r, fx->in);
    assert_no_output(fx);
}

static void test_in_wrong_shape(void **state)
{
    Fixture *fx = *state;
    const char *file = fmt(fx, "%s/x_5x3.npy", fx->in);
    write_input(file, "x", KG_NPY_F64, 2, (const size_t[]){5, 3});
    Result r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", file));
    ASSERT_BAD(r, file, "[3, 5]", "[5, 3]");

    file = fmt(fx, "%s/gamma_1x5.npy", fx->in);
    write_input(file, "gamma", KG_NPY_F64, 2, (const size_t[]){1, 5});
    r = RUN_LN(fx, "f64", "forward", "gamma", "--in", fmt(fx, "gamma=%s", file));
    ASSERT_BAD(r, file, "gamma", "[5]", "[1, 5]");

    file = fmt(fx, "%s/beta_4.npy", fx->in);
    write_input(file, "beta", KG_NPY_F32, 1, (const size_t[]){4});
    r = RUN_LN(fx, "f32", "forward", "beta", "--in", fmt(fx, "beta=%s", file));
    ASSERT_BAD(r, file, "beta", "[5]", "[4]");
    assert_no_output(fx);
}

static void test_in_wrong_dtype(void **state)
{
    Fixture *fx = *state;
    const char *f32 = input_path(fx, "x", "f32"), *f64 = input_path(fx, "x", "f64");
    Result r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", f32));
    ASSERT_BAD(r, f32, "float64", "float32");
    r = RUN_LN(fx, "f32", "forward", "x", "--in", fmt(fx, "x=%s", f64));
    ASSERT_BAD(r, f64, "float64", "float32");
    assert_no_output(fx);
}

static void test_in_truncated(void **state)
{
    Fixture *fx = *state;
    const char *good = input_path(fx, "x", "f64");
    struct stat sb;
    assert_int_equal(stat(good, &sb), 0);
    /* cut in the data, in the header, and in the magic */
    const off_t cuts[] = {sb.st_size - 8, sb.st_size / 2, 40, 4};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *file = fmt(fx, "%s/x_trunc%zu.npy", fx->in, i);
        FILE *f = fopen(good, "rb");
        assert_non_null(f);
        unsigned char *bytes = keep(fx, malloc((size_t)cuts[i]));
        assert_int_equal(fread(bytes, 1, (size_t)cuts[i], f), (size_t)cuts[i]);
        fclose(f);
        write_file(file, bytes, (size_t)cuts[i]);
        Result r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", file));
        ASSERT_BAD(r, file);
    }
    const char *empty = fmt(fx, "%s/empty.npy", fx->in);
    write_file(empty, "", 0);
    Result r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", empty));
    ASSERT_BAD(r, empty);
    assert_no_output(fx);
}

static void test_in_not_npy(void **state)
{
    Fixture *fx = *state;
    const char *file = fmt(fx, "%s/notes.npy", fx->in);
    const char text[] = "x,y\n1,2\n3,4\n5,6\n7,8\n9,10\n11,12\n13,14\n15,16\n17,18\n19,20\n21,22\n";
    write_file(file, text, sizeof text - 1);
    Result r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", file));
    ASSERT_BAD(r, file);
    /* right magic, garbage header */
    const char *bad_header = fmt(fx, "%s/bad_header.npy", fx->in);
    const char hdr[] = "\x93NUMPY\x01\x00\x10\x00{'descr': 'int'\n";
    write_file(bad_header, hdr, sizeof hdr - 1);
    r = RUN_LN(fx, "f64", "forward", "x", "--in", fmt(fx, "x=%s", bad_header));
    ASSERT_BAD(r, bad_header);
    assert_no_output(fx);
}

static void test_vjp_missing_cotangent(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "vjp", "y.cotangent");
    ASSERT_BAD(r, "y.cotangent");
    assert_no_output(fx);
}

static void test_jvp_missing_tangent(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "jvp", "x.tangent");
    ASSERT_BAD(r, "x.tangent");
    r = RUN_LN0(fx, "f32", "jvp", "beta.tangent");
    ASSERT_BAD(r, "beta.tangent");
    assert_no_output(fx);
}

/* A failed run must not even create a missing --out directory. */
static void test_failed_run_creates_no_out_dir(void **state)
{
    Fixture *fx = *state;
    const char *dir = fmt(fx, "%s/new", fx->out);
    Result r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--in",
                  fmt(fx, "x=%s", input_path(fx, "x", "f64")), "--out", dir);
    ASSERT_BAD(r, "gamma");
    r = KG(fx, "emit", "layernorm", "rows=0", "--out", dir);
    ASSERT_BAD(r, "rows=0");
    assert_no_output(fx);
}

/* --out naming a regular file is bad input; the file is left alone. */
static void test_out_not_a_directory(void **state)
{
    Fixture *fx = *state;
    const char *file = fmt(fx, "%s/file", fx->out);
    write_file(file, "keep", 4);
    Result r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--in",
           fmt(fx, "x=%s", input_path(fx, "x", "f64")), "--in", fmt(fx, "gamma=%s", input_path(fx, "gamma", "f64")),
           "--in", fmt(fx, "beta=%s", input_path(fx, "beta", "f64")), "--out", file);
    ASSERT_BAD(r, file); /* valid inputs: only --out is wrong */
    r = KG(fx, "emit", "layernorm", "--out", file);
    ASSERT_BAD(r, file);
    assert_string_equal(listing(fx, fx->out), "file");
    assert_string_equal(slurp(fx, file), "keep");
}

/* When one output cannot be put in place (here a directory already has its name), the run
   fails and must leave no other output behind: outputs are all-or-nothing.
   (Regression: x.grad.npy and gamma.grad.npy once stayed, renamed before the failure.) */
static void test_run_blocked_output_writes_nothing(void **state)
{
    Fixture *fx = *state;
    assert_int_equal(mkdir(fmt(fx, "%s/beta.grad.npy", fx->out), 0777), 0);
    Result r = RUN_LN0(fx, "f64", "vjp", NULL);
    ASSERT_BAD(r, "beta.grad.npy");
    assert_string_equal(listing(fx, fx->out), "beta.grad.npy");
}

/* Likewise for emit: the .h alone must not appear when the .c cannot be written.
   (Regression: the .h once stayed, renamed into place before the .c failed.) */
static void test_emit_blocked_output_writes_nothing(void **state)
{
    Fixture *fx = *state;
    assert_int_equal(mkdir(fmt(fx, "%s/layernorm_8x64_f32.c", fx->out), 0777), 0);
    Result r = KG(fx, "emit", "layernorm", "--out", fx->out);
    ASSERT_BAD(r, "layernorm_8x64_f32.c");
    assert_string_equal(listing(fx, fx->out), "layernorm_8x64_f32.c");
}

/* ==== domain failure ==== */

static void test_domain_failure(void **state)
{
    Fixture *fx = *state;
    static const char *const passes[] = {"forward", "vjp", "jvp"};
    static const kg_npy_dtype dts[] = {KG_NPY_F64, KG_NPY_F32};
    for (size_t t = 0; t < 2; t++) {
        double x[ROWS * DIM];
        for (size_t i = 0; i < ROWS * DIM; i++)
            x[i] = i / DIM == 1 ? 2.5 : value("x", i); /* row 1 is constant */
        const char *file = fmt(fx, "%s/x_const_row.%s.npy", fx->in, dtype_name(dts[t]));
        write_npy(file, dts[t], 2, (const size_t[]){ROWS, DIM}, x);
        for (size_t p = 0; p < 3; p++) {
            Result r = RUN_LN(fx, dtype_name(dts[t]), passes[p], "x", "eps=0", "--in", fmt(fx, "x=%s", file));
            ASSERT_BAD(r, "domain");
        }
    }
    assert_no_output(fx);
}

/* ==== success ==== */

/* Reads DIR/NAME and checks it is a ROWSxDIM (matrix) or DIM array of finite values. */
static void assert_npy_output(Fixture *fx, const char *name, kg_npy_dtype dt, int matrix)
{
    kg_npy t = {0};
    char err[512];
    const char *path = fmt(fx, "%s/%s", fx->out, name);
    if (kg_npy_read(path, &t, err, sizeof err) != 0)
        fail_msg("%s", err);
    int ok = t.dtype == dt && t.ndim == (matrix ? 2 : 1) && t.count == (matrix ? ROWS * DIM : DIM);
    for (size_t i = 0; ok && i < t.count; i++)
        ok = isfinite(dt == KG_NPY_F64 ? ((double *)t.data)[i] : ((float *)t.data)[i]);
    kg_npy_free(&t);
    if (!ok)
        fail_msg("%s: wrong dtype, shape or non-finite values", path);
}

static void test_run_forward(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "forward", NULL);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out), "y.npy");
    assert_npy_output(fx, "y.npy", KG_NPY_F64, 1);

    /* y matches the definition (eps = 1e-6, the torchlean default) */
    kg_npy y = {0};
    char err[512];
    assert_int_equal(kg_npy_read(fmt(fx, "%s/y.npy", fx->out), &y, err, sizeof err), 0);
    double maxerr = 0;
    for (size_t i = 0; i < ROWS; i++) {
        double mean = 0, var = 0;
        for (size_t j = 0; j < DIM; j++)
            mean += value("x", i * DIM + j) / DIM;
        for (size_t j = 0; j < DIM; j++)
            var += pow(value("x", i * DIM + j) - mean, 2) / DIM;
        for (size_t j = 0; j < DIM; j++) {
            double want = (value("x", i * DIM + j) - mean) / sqrt(var + 1e-6) * value("gamma", j) + value("beta", j);
            maxerr = fmax(maxerr, fabs(((double *)y.data)[i * DIM + j] - want));
        }
    }
    kg_npy_free(&y);
    assert_true(maxerr < 1e-12);

    /* f32, into a directory run creates */
    const char *dir = fmt(fx, "%s/f32", fx->out);
    r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--in", fmt(fx, "x=%s", input_path(fx, "x", "f32")),
           "--in", fmt(fx, "gamma=%s", input_path(fx, "gamma", "f32")), "--in",
           fmt(fx, "beta=%s", input_path(fx, "beta", "f32")), "--out", dir);
    assert_ok(&r);
    assert_string_equal(listing(fx, dir), "y.npy");
    assert_string_equal(listing(fx, fx->out), "f32 y.npy");
}

static void test_run_vjp(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "vjp", NULL);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out), "beta.grad.npy gamma.grad.npy x.grad.npy");
    assert_npy_output(fx, "x.grad.npy", KG_NPY_F64, 1);
    assert_npy_output(fx, "gamma.grad.npy", KG_NPY_F64, 0);
    assert_npy_output(fx, "beta.grad.npy", KG_NPY_F64, 0);
}

static void test_run_jvp(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f64", "jvp", NULL);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out), "y.tangent.npy");
    assert_npy_output(fx, "y.tangent.npy", KG_NPY_F64, 1);
}

/* A second run replaces the outputs in place and leaves no temporary files. */
static void test_run_twice_overwrites(void **state)
{
    Fixture *fx = *state;
    Result r = RUN_LN0(fx, "f32", "forward", NULL);
    assert_ok(&r);
    r = RUN_LN0(fx, "f32", "forward", NULL);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out), "y.npy");
    assert_npy_output(fx, "y.npy", KG_NPY_F32, 1);
    assert_string_equal(listing(fx, fx->root), "cap in out");
}

static void test_emit(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "--out", fx->out);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out), "layernorm_8x64_f32.c layernorm_8x64_f32.h");
    assert_contains(&r, r.out, "layernorm_8x64_f32.h");
    assert_string_equal(r.err, "");

    const char *dir = fmt(fx, "%s/named", fx->out);
    r = KG(fx, "emit", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--name", "ln", "--out", dir);
    assert_ok(&r);
    assert_string_equal(listing(fx, dir), "ln.c ln.h");
    assert_string_equal(listing(fx, fx->root), "cap in out");
}

static void test_emit_bad_param_writes_nothing(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "layernorm", "rows=0", "--out", fx->out);
    ASSERT_BAD(r, "rows=0");
    r = KG(fx, "emit", "layernorm", "--name", "not-an-identifier", "--out", fx->out);
    ASSERT_BAD(r, "--name", "not-an-identifier");
    r = KG(fx, "emit", "layernorm", "--name", "kg_entry", "--out", fx->out); /* kg_entry_forward is the runtime's */
    ASSERT_BAD(r, "--name", "kg_entry", "begins with kg_");
    r = KG(fx, "emit", "layernorm", "eps=nan"); /* default --out is the working directory */
    ASSERT_BAD(r, "eps=nan");
    assert_no_output(fx);
}

/* ==== hostile input (the sandbox's promises, README) ==== */

/* Shapes whose element count wraps around a 64-bit integer are refused, not emitted with size 0
   or run out of bounds. (Regression: check crashed in the JIT kernel, emit wrote _X_SIZE 0.) */
static void test_shape_overflow(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "check", "normalize_axis", "shape=4194304x4194304x4194304x4194304", "axis=1");
    ASSERT_BAD(r, "2^53");
    r = KG(fx, "emit", "normalize_axis", "shape=4194304x4194304x4194304x4194304", "axis=1", "--out", fx->out);
    ASSERT_BAD(r, "2^53");
    r = KG(fx, "emit", "batchnorm3d", "c=65536", "d=65536", "h=65536", "w=65536", "--out", fx->out);
    ASSERT_BAD(r, "2^53");
    r = KG(fx, "emit", "layernorm", "rows=100000", "dim=100000", "--out", fx->out); /* > INT_MAX */
    ASSERT_BAD(r, "at most 2147483647");
    assert_no_output(fx);
}

/* Symlinks planted at the temporary names kerngen once used (.NAME.tmp<pid>) and at a final
   name: nothing outside --out may change. Planted in the child, which knows kerngen's pid. */
static void plant_links(Fixture *fx)
{
    static const char *const names[] = {"y.npy", "layernorm_3x5_f32.c", "layernorm_3x5_f32.h"};
    char *victim = fmt_raw("%s/victim", fx->root);
    for (size_t i = 0; i < 3; i++) {
        char *link = fmt_raw("%s/.%s.tmp%ld", fx->out, names[i], (long)getpid());
        if (!victim || !link || symlink(victim, link) != 0)
            _exit(125);
        free(link);
    }
    free(victim);
}

static void test_temp_files_follow_no_links(void **state)
{
    Fixture *fx = *state;
    const char *victim = fmt(fx, "%s/victim", fx->root);
    write_file(victim, "keep", 4);
    g_child_setup = plant_links;
    Result r = RUN_LN0(fx, "f32", "forward", NULL);
    Result e = KG(fx, "emit", "layernorm", "rows=3", "dim=5", "--out", fx->out);
    g_child_setup = NULL;
    assert_ok(&r);
    assert_ok(&e);
    assert_string_equal(slurp(fx, victim), "keep");
    /* a link at a final name is replaced (renamed over), never written through */
    /* a link at a final name is refused, never written through or replaced */
    const char *y = fmt(fx, "%s/y.npy", fx->out);
    assert_int_equal(unlink(y), 0);
    assert_int_equal(symlink(victim, y), 0);
    r = RUN_LN0(fx, "f32", "forward", NULL);
    ASSERT_BAD(r, "y.npy", "exists and is not a regular file");
    assert_string_equal(slurp(fx, victim), "keep");
}

/* A spec path or an --in that is a FIFO is refused at once (it could block forever). */
static void test_fifo_inputs(void **state)
{
    Fixture *fx = *state;
    const char *fifo = fmt(fx, "%s/fifo.lua", fx->in);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    Result r = KG(fx, "emit", fifo, "--out", fx->out);
    ASSERT_BAD(r, "fifo.lua", "not a regular file");
    int hold = open(fifo, O_RDWR | O_NONBLOCK); /* a writer that stays open */
    assert_true(hold >= 0);
    r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--in", fmt(fx, "x=%s", fifo), "--in",
           fmt(fx, "gamma=%s", input_path(fx, "gamma", "f32")), "--in", fmt(fx, "beta=%s", input_path(fx, "beta", "f32")),
           "--out", fx->out);
    close(hold);
    ASSERT_BAD(r, "fifo.lua", "not a regular file");
    assert_string_equal(listing(fx, fx->out), "");
    /* a FIFO or a link at a default-named header's name: refused at once, neither opened nor
       followed (reading it to compare banners once blocked on the FIFO until killed) */
    const char *h = fmt(fx, "%s/layernorm_3x5_f32.h", fx->out);
    assert_int_equal(mkfifo(h, 0600), 0);
    r = KG(fx, "emit", "layernorm", "rows=3", "dim=5", "--out", fx->out);
    ASSERT_BAD(r, "layernorm_3x5_f32.h", "not a regular file");
    assert_int_equal(unlink(h), 0);
    assert_int_equal(symlink(fifo, h), 0);
    r = KG(fx, "emit", "layernorm", "rows=3", "dim=5", "--out", fx->out);
    ASSERT_BAD(r, "layernorm_3x5_f32.h", "not a regular file");
    assert_string_equal(listing(fx, fx->out), "layernorm_3x5_f32.h");
}

/* The shape in a .npy header is compared with the graph before any data is read: a file
   declaring 1 GiB is refused without allocating it (kerngen runs with 256 MiB of address space
   here; it once allocated and read the data first). */
static void limit_memory(Fixture *fx)
{
    (void)fx;
#ifndef __SANITIZE_ADDRESS__ /* AddressSanitizer reserves terabytes of address space */
    struct rlimit lim = {(rlim_t)256 << 20, (rlim_t)256 << 20};
    if (setrlimit(RLIMIT_AS, &lim) != 0)
        _exit(125);
#endif
}

static void test_npy_header_checked_first(void **state)
{
    Fixture *fx = *state;
    const char *big = fmt(fx, "%s/big.npy", fx->in);
    /* version 1.0, a 118-byte header (10 + 118 = 128, numpy's alignment), then 1 GiB of zeros */
    char header[129];
    snprintf(header, sizeof header, "\x93NUMPY\x01%c%c%c%-117s\n", 0, 118, 0,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456,), }");
    write_file(big, header, 128);
    assert_int_equal(truncate(big, 128 + ((off_t)1 << 30)), 0); /* sparse: a valid 1 GiB file */
    g_child_setup = limit_memory;
    Result r = RUN_LN(fx, "f32", "forward", "x", "--in", fmt(fx, "x=%s", big));
    g_child_setup = NULL;
    ASSERT_BAD(r, "big.npy", "expects shape [3, 5], the file has [268435456]");
}

/* Names reach dot labels only as identifiers: a spec cannot inject Graphviz attributes. */
static void test_dot_injection(void **state)
{
    Fixture *fx = *state;
    const char *spec = fmt(fx, "%s/dotinj.lua", fx->in);
    const char *text = "return { name = \"dotinj\", summary = \"s\", dims = { { \"n\", 4 } },\n"
                       "  inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
                       "  forward = function(g, v) v['a\", image=\"/etc/hostname'] = v.x * 2; v.y = v.x end }\n";
    write_file(spec, text, strlen(text));
    Result r = KG(fx, "dot", spec);
    ASSERT_BAD(r, "dotinj.lua:3", "value names must be C identifiers");
}

/* ==== dot and names ==== */

/* Width and height of a PNG file (its IHDR), 0 when it is not one. */
static void png_size(Fixture *fx, const char *path, unsigned *w, unsigned *h)
{
    const unsigned char *d = (const unsigned char *)slurp(fx, path);
    *w = *h = 0;
    if (memcmp(d, "\x89PNG", 4) == 0) {
        *w = (unsigned)d[16] << 24 | (unsigned)d[17] << 16 | (unsigned)d[18] << 8 | d[19];
        *h = (unsigned)d[20] << 24 | (unsigned)d[21] << 16 | (unsigned)d[22] << 8 | d[23];
    }
}

/* kerngen dot output renders with Graphviz (when it is installed) into pictures of a readable
   size: views and constants are folded, called graphs are clusters. */
static void test_dot_renders(void **state)
{
    Fixture *fx = *state;
    if (system("command -v dot >/dev/null 2>&1") != 0)
        skip(); /* graphviz is optional */
    static const char *const graphs[] = {"layernorm", "groupnorm", "prenorm_ffn", "postnorm_ffn"};
    static const char *const passes[] = {"forward", "vjp", "jvp", "vjp_saved"};
    for (size_t g = 0; g < 4; g++)
        for (size_t p = 0; p < 4; p++) {
            Result r = KG(fx, "dot", graphs[g], "--pass", passes[p]);
            assert_ok(&r);
            assert_contains(&r, r.out, "digraph");
            const char *src = fmt(fx, "%s/g.dot", fx->out), *png = fmt(fx, "%s/g.png", fx->out);
            write_file(src, r.out, strlen(r.out));
            char *cmd = fmt(fx, "dot -Tpng -o '%s' '%s'", png, src);
            assert_int_equal(system(cmd), 0);
            unsigned w, h;
            png_size(fx, png, &w, &h);
            if (!(w > 0 && w <= 3000 && h > 0 && h <= 3000))
                fail_msg("%s --pass %s renders %ux%u pixels", graphs[g], passes[p], w, h);
        }
}

/* Default names tell requests apart; a default-named pair is not replaced by another
   request's (an explicit --name may replace it). */
static void test_emit_names(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "ffn", "--out", fx->out);
    assert_ok(&r);
    r = KG(fx, "emit", "ffn", "gelu=erf", "--out", fx->out);
    assert_ok(&r);
    r = KG(fx, "emit", "layernorm", "eps=1e-5", "--semantics", "pytorch", "--out", fx->out);
    assert_ok(&r);
    r = KG(fx, "emit", "layernorm", "--vjp", "closed", "--out", fx->out);
    assert_ok(&r);
    assert_string_equal(listing(fx, fx->out),
                        "ffn_64x256_erf_f32.c ffn_64x256_erf_f32.h ffn_64x256_f32.c ffn_64x256_f32.h "
                        "layernorm_8x64_pytorch_f32.c layernorm_8x64_pytorch_f32.h "
                        "layernorm_8x64_vjpclosed_f32.c layernorm_8x64_vjpclosed_f32.h");
    r = KG(fx, "emit", "ffn", "--pass", "forward", "--out", fx->out); /* the same name, fewer passes */
    ASSERT_BAD(r, "ffn_64x256_f32.h", "another request");
    r = KG(fx, "emit", "ffn", "--unroll", "auto", "--out", fx->out); /* the same results: replaced */
    assert_ok(&r);
    r = KG(fx, "emit", "ffn", "--pass", "forward", "--name", "ffn_64x256_f32", "--out", fx->out);
    assert_ok(&r);
    assert_contains(&r, slurp(fx, fmt(fx, "%s/ffn_64x256_f32.h", fx->out)), "passes=forward\n");
}

/* emit --report: the memory table, and the training step of the firmware example within the
   issue's budget (1.25x its minimum RAM; a size, not a timing) */
static void test_emit_report(void **state)
{
    Fixture *fx = *state;
    Result r = KG(fx, "emit", "prenorm_ffn", "seq=4", "dmodel=32", "dff=128", "--train", "gamma,beta,b1,b2",
                  "--optimizer", "adam", "--report", "--out", fx->out);
    assert_ok(&r);
    assert_contains(&r, r.out, "opt. state");
    assert_contains(&r, r.out, "train ");
    const char *at = strstr(r.out, "training step");
    assert_non_null(at);
    double ratio = 0;
    assert_int_equal(sscanf(strstr(at, "RAM, ") + 5, "%lfx", &ratio), 1);
    print_message("  prenorm_ffn 4x32x128 adam step RAM: %.2fx the minimum\n", ratio);
    assert_true(ratio >= 1 && ratio <= 1.25);
    r = KG(fx, "emit", "layernorm", "--train", "gamma,nope", "--out", fx->out);
    ASSERT_BAD(r, "--train: 'nope' is not an input of the graph");
    r = KG(fx, "emit", "layernorm", "--optimizer", "adam", "--out", fx->out);
    ASSERT_BAD(r, "--optimizer: only with --train");
}

/* ==== --const: inputs baked into the code ==== */

/* emit and run with --const gamma=FILE: the same checks as run's --in (file, shape, dtype,
   header first), plus names: unknown, not an input, twice, also given to --in. */
static void test_const_errors(void **state)
{
    Fixture *fx = *state;
    const char *g64 = input_path(fx, "gamma", "f64"), *g32 = input_path(fx, "gamma", "f32");
    const char *x64 = input_path(fx, "x", "f64"), *missing = fmt(fx, "%s/no_such_file.npy", fx->in);
    const char *nan_file = fmt(fx, "%s/gamma_nan.npy", fx->in);
    write_npy(nan_file, KG_NPY_F64, 1, (const size_t[]){DIM}, (const double[]){1, 2, NAN, 4, 5});
    static const char *const cmds[] = {"emit", "run"};
    for (size_t c = 0; c < 2; c++) {
        const char *cmd = cmds[c];
        /* kerngen CMD layernorm rows=3 dim=5 --dtype f64 --const ARG [--const ARG2] + run's --in */
#define CONST_LN(arg, arg2)                                                                              \
    (strcmp(cmd, "run") == 0                                                                             \
         ? RUN_LN(fx, "f64", "forward", "gamma", "--const", (arg), (arg2) ? "--const" : "--dtype",          \
                  (arg2) ? (arg2) : "f64")                                                               \
         : KG(fx, cmd, "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--const", (arg),                \
              (arg2) ? "--const" : "--dtype", (arg2) ? (arg2) : "f64", "--out", fx->out))
        Result r = CONST_LN(fmt(fx, "gamma=%s", x64), NULL);
        ASSERT_BAD(r, x64, "--const gamma", "expects shape [5]", "[3, 5]");
        r = CONST_LN(fmt(fx, "gamma=%s", g32), NULL);
        ASSERT_BAD(r, g32, "--const gamma", "float64", "float32");
        r = CONST_LN(fmt(fx, "gamma=%s", missing), NULL);
        ASSERT_BAD(r, missing, "--const gamma");
        r = CONST_LN(fmt(fx, "gamma=%s", fx->in), NULL); /* a directory */
        ASSERT_BAD(r, fx->in, "--const gamma");
        r = CONST_LN(fmt(fx, "z=%s", g64), NULL);
        ASSERT_BAD(r, "--const z", "layernorm has no input", "x gamma beta");
        r = CONST_LN(fmt(fx, "y=%s", g64), NULL); /* an output */
        ASSERT_BAD(r, "--const y", "no input");
        r = CONST_LN(fmt(fx, "gamma=%s", g64), fmt(fx, "gamma=%s", g64));
        ASSERT_BAD(r, "--const gamma", "twice");
        r = CONST_LN("gamma", NULL);
        ASSERT_BAD(r, "--const 'gamma'", "NAME=FILE");
        r = CONST_LN(fmt(fx, "gamma=%s", nan_file), NULL);
        ASSERT_BAD(r, "--const gamma", "element 2 is NaN");
#undef CONST_LN
    }
    Result r = RUN_LN0(fx, "f64", "forward", NULL); /* every --in, gamma's too */
    assert_ok(&r);
    assert_int_equal(unlink(fmt(fx, "%s/y.npy", fx->out)), 0);
    r = RUN_LN(fx, "f64", "forward", NULL, "--const", fmt(fx, "gamma=%s", g64));
    ASSERT_BAD(r, "--in gamma", "baked in by --const");
    r = KG(fx, "check", "layernorm", "--const", fmt(fx, "gamma=%s", g64));
    ASSERT_BAD(r, "unknown option '--const"); /* check draws its own inputs */
    assert_no_output(fx);
}

/* The data of DIR/NAME (a .npy of doubles), which is then removed. */
static double *take_npy(Fixture *fx, const char *dir, const char *name, size_t *count)
{
    kg_npy t = {0};
    char err[512];
    const char *path = fmt(fx, "%s/%s", dir, name);
    if (kg_npy_read(path, &t, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(t.dtype, KG_NPY_F64);
    assert_int_equal(unlink(path), 0);
    *count = t.count;
    return keep(fx, t.data);
}

/* A baked gamma computes what --in gamma computes; it is no argument: no gradient, no tangent. */
static void test_const_run_and_emit(void **state)
{
    Fixture *fx = *state;
    const char *g64 = input_path(fx, "gamma", "f64"), *bake = fmt(fx, "gamma=%s", g64);
    static const char *const passes[] = {"forward", "vjp"};
    for (size_t p = 0; p < 2; p++) {
        static const char *const outs[2][2] = {{"y.npy", NULL}, {"x.grad.npy", "beta.grad.npy"}};
        Result r = RUN_LN0(fx, "f64", passes[p], NULL);
        assert_ok(&r);
        double *plain[2] = {NULL, NULL}, *baked[2] = {NULL, NULL};
        size_t n[2] = {0, 0}, m[2] = {0, 0};
        for (int o = 0; o < 2 && outs[p][o]; o++)
            plain[o] = take_npy(fx, fx->out, outs[p][o], &n[o]);
        if (p == 1)
            assert_int_equal(unlink(fmt(fx, "%s/gamma.grad.npy", fx->out)), 0);
        r = RUN_LN(fx, "f64", passes[p], "gamma", "--const", bake);
        assert_ok(&r);
        assert_string_equal(listing(fx, fx->out), p == 0 ? "y.npy" : "beta.grad.npy x.grad.npy");
        for (int o = 0; o < 2 && outs[p][o]; o++) {
            baked[o] = take_npy(fx, fx->out, outs[p][o], &m[o]);
            assert_int_equal(n[o], m[o]);
            if (memcmp(plain[o], baked[o], n[o] * sizeof(double)) != 0)
                fail_msg("%s %s: --const gamma differs from --in gamma", passes[p], outs[p][o]);
        }
    }
    /* jvp: no gamma.tangent */
    const char *jvp = fmt(fx, "%s/jvp", fx->out);
    Result r = KG(fx, "run", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--pass", "jvp", "--const", bake,
                  "--in", fmt(fx, "x=%s", input_path(fx, "x", "f64")), "--in", fmt(fx, "beta=%s", input_path(fx, "beta", "f64")),
                  "--in", fmt(fx, "x.tangent=%s", input_path(fx, "x.tangent", "f64")), "--in",
                  fmt(fx, "beta.tangent=%s", input_path(fx, "beta.tangent", "f64")), "--out", jvp);
    assert_ok(&r);
    assert_string_equal(listing(fx, jvp), "y.tangent.npy");

    const char *dir = fmt(fx, "%s/emit", fx->out);
    r = KG(fx, "emit", "layernorm", "rows=3", "dim=5", "--dtype", "f64", "--const", bake, "--out", dir);
    assert_ok(&r);
    assert_contains(&r, r.out, "layernorm_3x5_const_gamma_f64.h");
    assert_contains(&r, r.out, "baked tables: 40 bytes of flash)\n");
    assert_string_equal(listing(fx, dir), "layernorm_3x5_const_gamma_f64.c layernorm_3x5_const_gamma_f64.h");
    const char *h = slurp(fx, fmt(fx, "%s/layernorm_3x5_const_gamma_f64.h", dir));
    const char *c = slurp(fx, fmt(fx, "%s/layernorm_3x5_const_gamma_f64.c", dir));
    assert_contains(&r, h, " const=gamma\n");
    assert_contains(&r, h, " * tables:  gamma [5] baked in as static const double tables: 40 bytes (flash)\n");
    assert_contains(&r, c, "static const double layernorm_3x5_const_gamma_f64_gamma[5] = {\n    1.0, 1.125, 1.25, 1.375, 1.5\n};\n");
    if (strstr(h, "GAMMA_SIZE") || strstr(h, "gamma_grad") || strstr(h, "gamma_tan") || strstr(h, "restrict gamma"))
        fail_msg("the header still has gamma as an argument:\n%s", h);
    assert_string_equal(r.err, "");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* usage */
        T(test_no_arguments),
        T(test_unknown_command),
        T(test_unknown_option),
        T(test_option_missing_value),
        T(test_bad_dtype),
        T(test_bad_pass),
        T(test_bad_unroll),
        T(test_bad_semantics),
        T(test_bad_vjp_jvp_form),
        T(test_bad_dump_ir),
        T(test_fma_option),
        T(test_bad_seed),
        T(test_extra_positional),
        T(test_list_with_arguments),
        T(test_run_without_out),
        T(test_missing_graph),
        T(test_help),
        T(test_version),
        /* graph and parameters */
        T(test_unknown_graph),
        T(test_unknown_param),
        T(test_malformed_param),
        T(test_bad_dims),
        T(test_bad_eps),
        T(test_param_twice),
        /* run: .npy inputs */
        T(test_in_missing),
        T(test_in_unknown_name),
        T(test_in_twice),
        T(test_in_without_equals),
        T(test_in_nonexistent_file),
        T(test_in_wrong_shape),
        T(test_in_wrong_dtype),
        T(test_in_truncated),
        T(test_in_not_npy),
        T(test_vjp_missing_cotangent),
        T(test_jvp_missing_tangent),
        T(test_failed_run_creates_no_out_dir),
        T(test_out_not_a_directory),
        T(test_run_blocked_output_writes_nothing),
        T(test_emit_blocked_output_writes_nothing),
        /* domain failure */
        T(test_domain_failure),
        /* success */
        T(test_emit_report),
        T(test_run_forward),
        T(test_run_vjp),
        T(test_run_jvp),
        T(test_run_twice_overwrites),
        T(test_emit),
        T(test_emit_bad_param_writes_nothing),
        /* hostile input */
        T(test_shape_overflow),
        T(test_temp_files_follow_no_links),
        T(test_fifo_inputs),
        T(test_npy_header_checked_first),
        T(test_dot_injection),
        /* dot and names */
        T(test_dot_renders),
        T(test_emit_names),
        /* --const */
        T(test_const_errors),
        T(test_const_run_and_emit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
