/*
 * test_identity.c - the emitted files compute the JIT's bits under every compiler we ship for,
 * on the host and on a Cortex-M4F, whatever contraction flags the consumer uses.
 *
 * Cases: every graph kg_graphs() lists, f32 and f64, at small dims (kg_aot.h: small_dims) and,
 * for a graph that accepts gelu=erf, once more with it (the default is tanh). The JIT (libtcc)
 * runs forward, VJP and JVP on deterministic inputs (kg_aot.h: argset); its return codes and
 * output bits are the reference. The emitted .c is then built
 *
 *   on the host into shared objects, dlopen'd and called on the same inputs:
 *     gcc -O3 -march=native -ffp-contract=fast   contraction allowed on the command line
 *     clang -O3 -march=native                     clang's default (-ffp-contract=on)
 *     gcc -O0
 *   for a Cortex-M4F (arm-none-eabi-gcc, newlib, hard float), one firmware image per dtype and
 *   build holding every kernel, run under qemu-system-arm -M mps2-an386 (firmware/):
 *     -std=gnu17 -O2                              GNU defaults: -ffp-contract=fast
 *     -std=c99 -Os
 *   the inputs are embedded in the image as data; the image writes return codes, SysTick ticks
 *   and outputs to a file on the host (semihosting).
 *
 * The small-dims cases run once more generated with --fma on (a*b + c as C99 fma/fmaf, one
 * rounding; README "Fused multiply-add"): the same builds, where gcc and clang use the FMA
 * instructions, tcc and gcc -O0 call glibc's fma, and the M4F its vfma.f32 -- f32 only there,
 * since newlib's double fma is not correctly rounded (the file refuses to build: the
 * fma_refused_by_newlib test).
 *
 * No build passes -ffp-contract=off: the emitted files keep contraction off themselves
 * (templates/kernel.c.in). Every output element and return code must equal the JIT's; a
 * difference is reported with graph, dtype, pass, build, output, first differing index and both
 * values. At the default dims with unroll "none" (loops that gcc vectorizes), the gcc -O3
 * -ffp-contract=fast build is compared as well. And the JIT's own text (unroll auto) at dims
 * where its loops are x86-64 machine code beside C loops (gen/x86.lua, KG_X86_AVX2), with and
 * without --fma: the JIT runs the machine code (on a processor with AVX2 and FMA), gcc and
 * clang -march=native compile it too, gcc -O0 (no -mavx2) runs the C loops.
 * There is no allowance: kernels call no libm function but sqrt (correctly rounded everywhere);
 * exp, erf, erfc, tanh and GELU are the generator's own (gen/mathfn.lua), so newlib's libm on
 * the Cortex-M4F gives the same bits as glibc's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>

#include "kg_aot.h"

#define M4F_FLAGS "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"
#define QEMU_TIMEOUT "120"           /* seconds per firmware image */
#define INSTRUCTIONS_PER_TICK 40     /* SysTick runs at 25 MHz; qemu -icount shift=0: 1 ns per
                                        instruction (measured: firmware/README.md) */

static const char *const gcc_o3_fast[] = {"gcc", "-O3", "-march=native", "-ffp-contract=fast",
                                          "-fPIC", "-shared", NULL};
static const char *const clang_o3[] = {"clang", "-O3", "-march=native", "-fPIC", "-shared", NULL};
static const char *const gcc_o0[] = {"gcc", "-O0", "-fPIC", "-shared", NULL};
static const char *const m4f_gnu17[] = {"arm-none-eabi-gcc", "-std=gnu17", "-O2", M4F_FLAGS,
                                        "-Wall", "-Wextra", "-Werror", NULL};
static const char *const m4f_c99[] = {"arm-none-eabi-gcc", "-std=c99", "-Os", M4F_FLAGS, "-Wall",
                                      "-Wextra", "-Wpedantic", "-Werror", NULL};

typedef struct {
    const char *label;
    const char *const *argv; /* the compiler and its flags */
    int firmware;            /* 1: Cortex-M4F image under qemu; 0: host shared object */
    int default_dims;        /* 1: also builds the default-dims cases */
    const char *only_dtype;  /* NULL: f32 and f64 */
} build;

/* The second firmware build is f32 only: f64 is soft-float on the M4F (libgcc), where nothing
   can be contracted, so it would repeat the gnu17 image. */
static const build builds[] = {
    {"gcc -O3 -march=native -ffp-contract=fast", gcc_o3_fast, 0, 1, NULL},
    {"clang -O3 -march=native", clang_o3, 0, 0, NULL},
    {"gcc -O0", gcc_o0, 0, 0, NULL},
    {"cortex-m4f gcc -std=gnu17 -O2", m4f_gnu17, 1, 0, NULL},
    {"cortex-m4f gcc -std=c99 -Os", m4f_c99, 1, 0, "f32"},
};
enum { NBUILDS = sizeof builds / sizeof builds[0] };

static const char *const dtypes[] = {"f32", "f64"};

/* The kinds of cases: small dims (kg_aot.h) and default dims, both unroll none (emit's
   default), and the JIT's text at the dims of jit_dims */
enum { K_SMALL, K_DEFAULT, K_JIT, NKINDS };
static const char *const kind_dir[NKINDS] = {"small", "default", "jit"};
static const struct {
    const char *graph;
    const char *params[5];
    int n;
} jit_dims[] = { /* rows of whole lane steps and a rest in f32 (16 lanes) */
    {"layernorm", {"rows=3", "dim=40"}, 2},
    {"rmsnorm", {"rows=2", "dim=36"}, 2},
    {"batchnorm2d", {"c=2", "h=3", "w=12"}, 3},
    {"seq_ffn", {"seq=2", "dmodel=16", "dff=24"}, 3},
    {"mlp", {"seq=2", "dmodel=64", "dff=130"}, 3}, /* loops inside machine code */
    {"groupnorm", {"b=1", "h=2", "w=3", "c=16", "groups=4"}, 5}, /* 7 streams: rbx */
};

/* One kernel: graph, dtype, optional attribute, small or default dims. */
typedef struct {
    const char *graph, *dtype, *attr;
    int kind;                       /* K_SMALL, K_DEFAULT or K_JIT */
    int fma;                        /* generated with --fma on */
    kg_kernel *k;
    char *label;                    /* "ffn f32 (dmodel=4 dff=6 gelu=erf)" */
    char *c_path;                   /* the emitted .c */
    argset ref[KG_NPASSES];         /* the JIT's inputs and outputs */
    int rc[KG_NPASSES];
    char *problem;                  /* generation or JIT failure */
    char *diff[NBUILDS][KG_NPASSES]; /* first difference from the JIT, NULL: identical */
    int compared[NBUILDS];          /* the build ran this case */
    uint64_t ticks[NBUILDS][KG_NPASSES]; /* SysTick ticks of each pass on the device */
} kcase;

typedef struct {
    char dir[64];      /* mkdtemp(): small/, default/ and fw/ hold every file written */
    char *fw_src;      /* <repository>/firmware: startup code, linker script, driver */
    char **graphs;     /* kg_graphs() */
    int ngraphs;
    kcase *cs;
    int n;
    int failures;      /* build failures and differences outside the known set */
} fixture;

/* ---- cases: generate, JIT-run, write the files ---- */

static void case_prepare(fixture *fx, kcase *c)
{
    kg_status st;
    char *err = NULL, *name = NULL;
    const char *unroll = "none"; /* kerngen emit's default: loops */
    const char *fma = c->fma ? "on" : NULL;
    if (c->kind == K_JIT) {
        kg_request r = request_for(c->graph, c->dtype, "auto");
        r.fma = fma;
        for (size_t i = 0; i < sizeof jit_dims / sizeof jit_dims[0]; i++)
            if (strcmp(jit_dims[i].graph, c->graph) == 0) {
                r.params = jit_dims[i].params;
                r.nparams = jit_dims[i].n;
            }
        c->k = generate_st(&r, &c->problem, &st);
    } else
        c->k = generate_case(c->graph, c->dtype, unroll, fma, c->kind == K_SMALL, c->attr, NULL, &st,
                             &c->problem);
    if (c->k && c->attr) { /* the same C names as the tanh kernel: rename */
        name = xprintf("%s_%s", kg_text(c->k, KG_TEXT_NAME), "gelu_erf");
        kg_free(c->k);
        c->k = generate_case(c->graph, c->dtype, unroll, fma, c->kind == K_SMALL, c->attr, name, &st,
                             &c->problem);
        free(name);
    }
    if (c->k && kg_compile(c->k, &err) != KG_OK) {
        c->problem = xprintf("kg_compile failed: %s", err ? err : "?");
        free(err);
        return;
    }
    if (!c->k)
        return;
    c->label = xprintf("%s %s%s (%s)", c->graph, c->dtype, c->fma ? " fma" : "",
                       kg_text(c->k, KG_TEXT_PARAMS));
    char *dir = xprintf("%s/%s", fx->dir, kind_dir[c->kind]);
    c->c_path = xprintf("%s/%s", dir, kg_text(c->k, KG_TEXT_SOURCE_FILE));
    if (kg_write_files(c->k, dir, &err) != KG_OK) {
        c->problem = xprintf("kg_write_files failed: %s", err ? err : "?");
        free(err);
    }
    free(dir);
    for (int p = 0; !c->problem && p < KG_NPASSES; p++) {
        argset_make(&c->ref[p], c->k, (kg_pass)p);
        c->rc[p] = kg_call(c->k, (kg_pass)p, c->ref[p].args, c->ref[p].n + 1);
    }
}

static void case_free(kcase *c)
{
    kg_free(c->k);
    free(c->label);
    free(c->c_path);
    free(c->problem);
    for (int p = 0; p < KG_NPASSES; p++)
        argset_free(&c->ref[p]);
    for (int b = 0; b < NBUILDS; b++)
        for (int p = 0; p < KG_NPASSES; p++)
            free(c->diff[b][p]);
}

#ifdef __GNUC__
__attribute__((format(printf, 2, 3)))
#endif
static void failure(fixture *fx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = malloc((size_t)n + 1);
    assert_non_null(msg);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    /* cmocka truncates long messages: print in pieces (a job's log can be long) */
    for (int at = 0; at < n; at += 800)
        print_error("%s%.800s", at ? "" : "FAIL ", msg + at);
    print_error("\n");
    free(msg);
    fx->failures++;
}

/* Every graph at small dims (and once more with gelu=erf where the graph accepts it), the same
   with --fma on, then every graph at its default dims, each in both dtypes; then jit_dims'
   graphs, with and without --fma. */
static void cases_make(fixture *fx)
{
    enum { NJIT = sizeof jit_dims / sizeof jit_dims[0] };
    fx->cs = calloc((size_t)fx->ngraphs * 10 + NJIT * 4, sizeof *fx->cs);
    assert_non_null(fx->cs);
    for (int i = 0; i < NJIT; i++)
        for (int f = 0; f < 2; f++)
            for (int d = 0; d < 2; d++) {
                kcase *c = &fx->cs[fx->n++];
                c->graph = jit_dims[i].graph;
                c->dtype = dtypes[d];
                c->kind = K_JIT;
                c->fma = f;
                case_prepare(fx, c);
                if (c->problem)
                    failure(fx, "%s %s%s unroll auto: %s", c->graph, c->dtype, f ? " fma" : "", c->problem);
                else if (!strstr(kg_text(c->k, KG_TEXT_SOURCE), "__asm__")) /* else it proves nothing */
                    failure(fx, "%s %s%s unroll auto: no machine code at these dims", c->graph, c->dtype,
                            f ? " fma" : "");
            }
    for (int variant = 0; variant < 3; variant++) /* small, small fma, default dims */
        for (int g = 0; g < fx->ngraphs; g++) {
            int dflt = variant == 2;
            kg_status st = KG_OK;
            char *problem = NULL;
            kg_kernel *probe = dflt ? NULL : generate_case(fx->graphs[g], "f32", NULL, NULL, 1,
                                                           "gelu=erf", NULL, &st, &problem);
            for (int a = 0; a < (probe ? 2 : 1); a++)
                for (int d = 0; d < 2; d++) {
                    kcase *c = &fx->cs[fx->n++];
                    c->graph = fx->graphs[g];
                    c->dtype = dtypes[d];
                    c->attr = a ? "gelu=erf" : NULL;
                    c->kind = dflt ? K_DEFAULT : K_SMALL;
                    c->fma = variant == 1;
                    case_prepare(fx, c);
                    if (c->problem)
                        failure(fx, "%s %s%s%s: %s", c->graph, c->dtype, c->fma ? " fma" : "",
                                dflt ? " default dims" : "", c->problem);
                }
            kg_free(probe);
            free(problem);
        }
}

/* Does build B run case C? */
static int runs(const kcase *c, int b)
{
    int f64 = strcmp(c->dtype, "f64") == 0;
    int host_only = c->kind != K_SMALL && builds[b].firmware;
    return !c->problem && !host_only && (c->kind != K_DEFAULT || builds[b].default_dims) &&
           (!builds[b].only_dtype || strcmp(builds[b].only_dtype, c->dtype) == 0) &&
           !(c->fma && f64 && builds[b].firmware);
}

/* NULL if the pass returned the JIT's code and wrote the JIT's bits, else the first difference. */
static char *differs(const kcase *c, int p, int rc, const argset *got, const char *who)
{
    if (rc != c->rc[p])
        return xprintf("%s: JIT returned %d, %s returned %d", pass_names(p), c->rc[p], who, rc);
    return outputs_differ(c->k, (kg_pass)p, &c->ref[p], got, "JIT", who);
}

/* ---- batches: one compiler run per build, dtype and dims builds every kernel into one
   shared object (host) or one firmware image (Cortex-M4F) ---- */

typedef struct {
    int b, kind;
    const char *dtype;
    char *out;  /* the .so or .elf */
    char *prog; /* the generated thunks (and, for firmware, data, call table and main) */
    job job;
} batch;

static int in_batch(const kcase *c, const batch *t)
{
    return runs(c, t->b) && c->kind == t->kind && strcmp(c->dtype, t->dtype) == 0;
}

static char *batch_file(const fixture *fx, const batch *t, const char *what)
{
    return xprintf("%s/fw/%s_%s_b%d%s", fx->dir, t->dtype, kind_dir[t->kind], t->b,
                   what);
}

static size_t arg_bytes(const kg_kernel *k, const kg_arg *a)
{
    return (a->count ? a->count : 1) * kg_elem_size(k);
}

/* The JIT's inputs of case I as uint32_t arrays k<i>_<pass>_<arg>, the argument table of each
   pass for firmware/kg_fw.h: inputs copied in, outputs written back (arguments updated in
   place both), the workspace last. The inputs are made again: the JIT's call updated some. */
static void print_fw_args(FILE *f, const kcase *c, int i)
{
    for (int p = 0; p < KG_NPASSES; p++) {
        argset in;
        argset_make(&in, c->k, (kg_pass)p);
        int n = kg_nargs(c->k, (kg_pass)p);
        for (int j = 0; j < n; j++) {
            const kg_arg *a = kg_arg_at(c->k, (kg_pass)p, j);
            if (!kg_role_reads(a->role))
                continue;
            size_t words = arg_bytes(c->k, a) / 4;
            fprintf(f, "static const uint32_t k%d_%s_%d[%zu] = {", i, pass_names(p), j, words);
            for (size_t w = 0; w < words; w++) {
                uint32_t u;
                memcpy(&u, (const unsigned char *)in.args[j] + 4 * w, 4);
                fprintf(f, "%s0x%08x", w == 0 ? "\n    " : w % 8 ? ", " : ",\n    ", (unsigned)u);
            }
            fprintf(f, "};\n");
        }
        fprintf(f, "static const kg_fw_arg k%d_%s_args[] = {\n", i, pass_names(p));
        for (int j = 0; j < n; j++) {
            const kg_arg *a = kg_arg_at(c->k, (kg_pass)p, j);
            if (kg_role_reads(a->role))
                fprintf(f, "    {%zu, k%d_%s_%d, %d}, /* %s */\n", arg_bytes(c->k, a), i,
                        pass_names(p), j, kg_role_writes(a->role), a->cname);
            else
                fprintf(f, "    {%zu, NULL, 1}, /* %s */\n", arg_bytes(c->k, a), a->cname);
        }
        fprintf(f, "    {%zu, NULL, 0}, /* workspace */\n};\n",
                kg_ws_size(c->k, (kg_pass)p) * kg_elem_size(c->k));
        argset_free(&in);
    }
}

/* Writes the batch's program: thunks k<i>_<pass> for its kernels and, for firmware, their
   inputs, the call table and main (the results path comes from -DKG_FW_RESULTS). */
static void write_program(const fixture *fx, batch *t)
{
    int fw = builds[t->b].firmware;
    t->prog = batch_file(fx, t, fw ? "_calls.c" : "_thunks.c");
    FILE *f = fopen(t->prog, "w");
    assert_non_null(f);
    fprintf(f, "/* written by tests/test_identity.c */\n#include <stddef.h>\n#include <stdint.h>\n");
    if (fw)
        fprintf(f, "#include \"kg_fw.h\"\n");
    for (int i = 0; i < fx->n; i++)
        if (in_batch(&fx->cs[i], t))
            fprintf(f, "#include \"%s\"\n", kg_text(fx->cs[i].k, KG_TEXT_HEADER_FILE));
    for (int i = 0; i < fx->n; i++) {
        const kcase *c = &fx->cs[i];
        if (!in_batch(c, t))
            continue;
        char *prefix = xprintf("k%d_", i);
        fprintf(f, "\n/* %s */\n", c->label);
        print_thunks(f, c->k, fw ? "static " : "", prefix);
        free(prefix);
        if (fw)
            print_fw_args(f, c, i);
    }
    if (fw) {
        fprintf(f, "\nstatic const kg_fw_call calls[] = {\n");
        for (int i = 0; i < fx->n; i++)
            for (int p = 0; in_batch(&fx->cs[i], t) && p < KG_NPASSES; p++)
                fprintf(f, "    {\"%s_%s\", k%d_%s, %d, k%d_%s_args},\n",
                        kg_text(fx->cs[i].k, KG_TEXT_NAME), pass_names(p), i, pass_names(p),
                        kg_nargs(fx->cs[i].k, (kg_pass)p) + 1, i, pass_names(p));
        fprintf(f, "};\n\nint main(void);\nint main(void)\n{\n    return kg_fw_run(calls, "
                   "(int)(sizeof calls / sizeof calls[0]), KG_FW_RESULTS);\n}\n");
    }
    assert_int_equal(fclose(f), 0);
}

/* The compiler run of batch T: every kernel of the batch and its program, into a .so or, with
   firmware/'s startup code, linker script and driver, into a firmware image. */
static void batch_job(const fixture *fx, batch *t)
{
    const build *bd = &builds[t->b];
    char *log = batch_file(fx, t, ".log");
    char *kdir = xprintf("%s/%s", fx->dir, kind_dir[t->kind]);
    write_program(fx, t);
    t->out = batch_file(fx, t, bd->firmware ? ".elf" : ".so");
    job_init(&t->job, log, bd->argv, "-I", kdir, "-o", t->out, t->prog, (const char *)NULL);
    if (bd->firmware) {
        char *results = batch_file(fx, t, ".bin");
        char *def = xprintf("-DKG_FW_RESULTS=\"%s\"", results);
        char *ld = xprintf("%s/mps2_an386.ld", fx->fw_src);
        char *startup = xprintf("%s/startup.c", fx->fw_src);
        char *driver = xprintf("%s/kg_fw.c", fx->fw_src);
        const char *more[] = {"-I", fx->fw_src, def, "--specs=nano.specs", "--specs=rdimon.specs",
                              "-nostartfiles", "-T", ld, startup, driver};
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
            job_add(&t->job, more[i]);
        free(results);
        free(def);
        free(ld);
        free(startup);
        free(driver);
    }
    for (int i = 0; i < fx->n; i++)
        if (in_batch(&fx->cs[i], t))
            job_add(&t->job, fx->cs[i].c_path);
    job_add(&t->job, "-lm");
    free(log);
    free(kdir);
}

typedef int (*entry_fn)(void *const *);

/* Calls every pass of every kernel in the batch's .so and compares with the JIT. */
static void so_compare(fixture *fx, const batch *t)
{
    void *lib = dlopen(t->out, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        failure(fx, "%s %s: dlopen %s: %s", builds[t->b].label, t->dtype, t->out, e ? e : "?");
        return;
    }
    for (int i = 0; i < fx->n; i++) {
        kcase *c = &fx->cs[i];
        for (int p = 0; in_batch(c, t) && p < KG_NPASSES; p++) {
            char *name = xprintf("k%d_%s", i, pass_names(p));
            dlerror();
            void *sym = dlsym(lib, name);
            free(name);
            assert_non_null(sym);
            entry_fn fn;
            memcpy(&fn, &sym, sizeof sym); /* ISO C has no object-to-function pointer cast */
            argset got;
            argset_make(&got, c->k, (kg_pass)p);
            c->diff[t->b][p] = differs(c, p, fn(got.args), &got, "AOT");
            argset_free(&got);
            c->compared[t->b] = 1;
        }
    }
    dlclose(lib);
}

static uint64_t le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Reads the image's results file (firmware/kg_fw.h: per call an int32 return code, uint64
   ticks, then the outputs) and compares every call with the JIT. */
static void fw_compare(fixture *fx, const batch *t)
{
    char *path = batch_file(fx, t, ".bin");
    size_t len = 0, at = 0;
    unsigned char *data = (unsigned char *)slurp(path, &len);
    const char *what = builds[t->b].label;
    if (!data) {
        failure(fx, "%s %s: no results file %s", what, t->dtype, path);
        free(path);
        return;
    }
    for (int i = 0; i < fx->n; i++) {
        kcase *c = &fx->cs[i];
        for (int p = 0; in_batch(c, t) && p < KG_NPASSES; p++) {
            int n = kg_nargs(c->k, (kg_pass)p);
            size_t need = 12;
            for (int j = 0; j < n; j++)
                if (kg_role_writes(kg_arg_at(c->k, (kg_pass)p, j)->role))
                    need += arg_bytes(c->k, kg_arg_at(c->k, (kg_pass)p, j));
            if (len - at < need) {
                failure(fx, "%s %s: %s ends before %s %s", what, t->dtype, path, c->label,
                        pass_names(p));
                free(data);
                free(path);
                return;
            }
            argset got;
            argset_make(&got, c->k, (kg_pass)p);
            int rc = (int)(int32_t)(uint32_t)le(data + at, 4);
            c->ticks[t->b][p] = le(data + at + 4, 8);
            at += 12;
            for (int j = 0; j < n; j++) {
                const kg_arg *a = kg_arg_at(c->k, (kg_pass)p, j);
                if (kg_role_writes(a->role)) {
                    memcpy(got.args[j], data + at, arg_bytes(c->k, a));
                    at += arg_bytes(c->k, a);
                }
            }
            c->diff[t->b][p] = differs(c, p, rc, &got, "M4F");
            argset_free(&got);
            c->compared[t->b] = 1;
        }
    }
    if (at != len)
        failure(fx, "%s %s: %s has %zu bytes after the last call", what, t->dtype, path,
                len - at);
    free(data);
    free(path);
}

/* ---- the test ---- */

/* Prints one line per case (differences on lines of their own), then the counts. */
static void report(fixture *fx)
{
    int fw = -1; /* the first firmware build: its instruction estimates are printed */
    for (int b = NBUILDS - 1; b >= 0; b--)
        if (builds[b].firmware)
            fw = b;
    for (int i = 0; i < fx->n; i++) {
        kcase *c = &fx->cs[i];
        int nb = 0, ndiff = 0;
        for (int b = 0; b < NBUILDS; b++) {
            nb += c->compared[b];
            for (int p = 0; p < KG_NPASSES; p++) {
                if (!c->diff[b][p])
                    continue;
                ndiff++;
                failure(fx, "%s on %s: %s", c->label, builds[b].label, c->diff[b][p]);
            }
        }
        if (c->problem || ndiff)
            continue;
        print_message("ok   %s%s: forward, vjp, jvp identical to the JIT in %d builds", c->label,
                      c->kind == K_DEFAULT ? " unroll=none" : c->kind == K_JIT ? " unroll=auto" : "", nb);
        if (fw >= 0 && c->compared[fw])
            print_message("; M4F ~%llu/%llu/%llu instructions",
                          (unsigned long long)c->ticks[fw][0] * INSTRUCTIONS_PER_TICK,
                          (unsigned long long)c->ticks[fw][1] * INSTRUCTIONS_PER_TICK,
                          (unsigned long long)c->ticks[fw][2] * INSTRUCTIONS_PER_TICK);
        print_message("\n");
    }
    print_message("     kernel x pass groups identical to the JIT at small dims (f32, f64):\n");
    for (int b = 0; b < NBUILDS; b++) {
        print_message("       %-42s", builds[b].label);
        for (int d = 0; d < 2; d++) {
            int same = 0, all = 0;
            for (int i = 0; i < fx->n; i++)
                for (int p = 0; p < KG_NPASSES; p++)
                    if (fx->cs[i].kind == K_SMALL && fx->cs[i].compared[b] &&
                        strcmp(fx->cs[i].dtype, dtypes[d]) == 0) {
                        all++;
                        same += !fx->cs[i].diff[b][p];
                    }
            if (all)
                print_message(" %3d/%-3d", same, all);
            else
                print_message("    -   ");
        }
        print_message("\n");
    }
    int same[4] = {0}, all[4] = {0}; /* small, small with --fma on, default dims, the JIT's text */
    for (int i = 0; i < fx->n; i++)
        for (int p = 0; p < KG_NPASSES; p++) {
            const kcase *c = &fx->cs[i];
            int ok = !c->problem, v = c->kind == K_DEFAULT ? 2 : c->kind == K_JIT ? 3 : c->fma;
            for (int b = 0; b < NBUILDS; b++)
                ok &= !fx->cs[i].diff[b][p] && (fx->cs[i].compared[b] || !runs(&fx->cs[i], b));
            all[v]++;
            same[v] += ok;
        }
    print_message("     identical in every build: %d/%d groups at small dims, %d/%d with --fma on "
                  "(f64 not on the M4F), %d/%d at default dims (unroll none, %s), %d/%d of the "
                  "JIT's text (unroll auto, host builds)\n", same[0], all[0], same[1], all[1], same[2],
                  all[2], builds[0].label, same[3], all[3]);
}

static void bit_identical_across_builds(void **state)
{
    fixture *fx = *state;
    static const char *const tools[] = {"gcc", "clang", "arm-none-eabi-gcc", "qemu-system-arm",
                                        "timeout"};
    for (size_t t = 0; t < sizeof tools / sizeof tools[0]; t++)
        if (!on_path(tools[t]))
            fail_msg("%s is not on PATH: ./build.sh test installs it (Debian packages clang, "
                     "gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)", tools[t]);
#if defined(__x86_64__) || defined(__i386__)
    if (!__builtin_cpu_supports("fma"))
        print_message("NOTE this CPU has no FMA: the -march=native builds cannot contract, so the "
                      "host half of this test proves less here\n");
#endif
    double t0 = now_s();
    cases_make(fx);
    double t_gen = now_s() - t0;

    /* one batch per build, dtype and dims; firmware first (the longest compiles) */
    batch ts[NBUILDS * 2 * NKINDS];
    job jobs[NBUILDS * 2 * NKINDS];
    int nt = 0;
    for (int fw = 1; fw >= 0; fw--)
        for (int b = 0; b < NBUILDS; b++)
            for (int d = 0; builds[b].firmware == fw && d < 2; d++)
                for (int kind = 0; kind < NKINDS; kind++) {
                    batch *t = &ts[nt];
                    memset(t, 0, sizeof *t);
                    t->b = b;
                    t->dtype = dtypes[d];
                    t->kind = kind;
                    int used = 0;
                    for (int i = 0; i < fx->n; i++)
                        used |= in_batch(&fx->cs[i], t);
                    if (!used)
                        continue;
                    batch_job(fx, t);
                    jobs[nt++] = t->job;
                }
    t0 = now_s();
    run_jobs(jobs, (size_t)nt);
    double t_build = now_s() - t0;

    /* host: compare; firmware: run the images that linked under qemu, in parallel */
    job runs_q[NBUILDS * 4];
    int q_of[NBUILDS * 4], nq = 0;
    for (int k = 0; k < nt; k++) {
        batch *t = &ts[k];
        t->job = jobs[k];
        q_of[k] = -1;
        char *msg = job_problem(&t->job);
        if (msg) {
            failure(fx, "%s %s: %s", builds[t->b].label, t->dtype, msg);
            free(msg);
        } else if (!builds[t->b].firmware) {
            so_compare(fx, t);
        } else {
            char *log = batch_file(fx, t, ".qemu.log");
            q_of[k] = nq;
            job_init(&runs_q[nq++], log, (const char *const[]){"timeout", QEMU_TIMEOUT, NULL},
                     "qemu-system-arm", "-M", "mps2-an386", "-icount", "shift=0",
                     "-semihosting-config", "enable=on,target=native", "-nographic", "-monitor",
                     "none", "-serial", "none", "-kernel", t->out, (const char *)NULL);
            free(log);
        }
    }
    t0 = now_s();
    run_jobs(runs_q, (size_t)nq);
    double t_qemu = now_s() - t0;
    for (int k = 0; k < nt; k++) {
        batch *t = &ts[k];
        if (q_of[k] >= 0) {
            job *q = &runs_q[q_of[k]];
            char *log = slurp(q->log, NULL), *msg = job_problem(q);
            print_message("     %s %s: %s", builds[t->b].label, t->dtype,
                          log && *log ? log : "(no output)\n");
            if (msg)
                failure(fx, "%s %s under qemu: %s", builds[t->b].label, t->dtype, msg);
            else
                fw_compare(fx, t);
            free(log);
            free(msg);
            job_free(q);
        }
        job_free(&t->job);
        free(t->out);
        free(t->prog);
    }
    report(fx);
    print_message("     %.1f s generating and running the JIT, %.1f s building, %.1f s in qemu\n",
                  t_gen, t_build, t_qemu);
    if (fx->failures)
        fail_msg("%d failures (FAIL lines above)", fx->failures);
}

/* Under --fma on, a file whose fma would come from newlib's libm does not build: newlib 3.3's
   fma is x*y + z and its fmaf goes through double (two roundings). The Cortex-M4F has a single-
   precision fused multiply-add (f32 builds) but none for double; a Cortex-M3 has no FPU. */
static void fma_refused_by_newlib(void **state)
{
    fixture *fx = *state;
    static const char *const m4f[] = {"arm-none-eabi-gcc", M4F_FLAGS, "-O2", "-c", NULL};
    static const char *const m3[] = {"arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-O2",
                                     "-c", NULL};
    static const struct {
        const char *dtype;
        const char *const *argv;
        int builds;
    } cases[] = {{"f32", m4f, 1}, {"f64", m4f, 0}, {"f32", m3, 0}};
    enum { N = sizeof cases / sizeof cases[0] };
    char *dir = xprintf("%s/fma_check", fx->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    job jobs[N];
    for (int i = 0; i < N; i++) {
        kg_status st;
        char *problem = NULL, *err = NULL;
        kg_kernel *k = generate_case("layernorm", cases[i].dtype, NULL, "on", 1, NULL, NULL, &st,
                                     &problem);
        if (!k)
            fail_msg("layernorm %s --fma on: %s", cases[i].dtype, problem);
        assert_int_equal(kg_write_files(k, dir, &err), KG_OK);
        char *src = xprintf("%s/%s", dir, kg_text(k, KG_TEXT_SOURCE_FILE));
        char *log = xprintf("%s/%d.log", dir, i), *obj = xprintf("%s/%d.o", dir, i);
        job_init(&jobs[i], log, cases[i].argv, "-o", obj, src, (const char *)NULL);
        free(src);
        free(log);
        free(obj);
        kg_free(k);
    }
    run_jobs(jobs, N);
    for (int i = 0; i < N; i++) {
        char *msg = job_problem(&jobs[i]);
        if (cases[i].builds && msg)
            fail_msg("%s", msg);
        if (!cases[i].builds && (!msg || !strstr(msg, "generated with --fma on, but newlib's")))
            fail_msg("%s %s --fma on: expected the newlib refusal, got %s", jobs[i].argv[1],
                     cases[i].dtype, msg ? msg : "a build");
        print_message("ok   %s %s --fma on: %s\n", jobs[i].argv[1], cases[i].dtype,
                      msg ? "refused (newlib's fma)" : "builds");
        free(msg);
        job_free(&jobs[i]);
    }
    free(dir);
}

/* ---- fixture ---- */

static int group_teardown(void **state)
{
    fixture *fx = *state;
    if (fx->dir[0])
        kgt_remove_tree(fx->dir);
    for (int i = 0; i < fx->n; i++)
        case_free(&fx->cs[i]);
    free(fx->cs);
    for (int g = 0; g < fx->ngraphs; g++)
        free(fx->graphs[g]);
    free(fx->graphs);
    free(fx->fw_src);
    free(fx);
    return 0;
}

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char *text = NULL, *err = NULL;
    const char *root = getenv("KERNGEN_ROOT");
    assert_non_null(fx);
    *state = fx;
    fx->fw_src = xprintf("%s/firmware", root && *root ? root : ".");
    char *probe = xprintf("%s/kg_fw.c", fx->fw_src);
    int ok = access(probe, R_OK) == 0;
    if (!ok)
        fprintf(stderr, "group setup: no %s (run from the repository root or set KERNGEN_ROOT)\n",
                probe);
    free(probe);
    strcpy(fx->dir, "/tmp/kg_identity_XXXXXX");
    if (ok && !mkdtemp(fx->dir)) {
        fprintf(stderr, "group setup: mkdtemp: %s\n", strerror(errno));
        fx->dir[0] = '\0';
        ok = 0;
    }
    static const char *const subdirs[] = {"small", "default", "jit", "fw"};
    for (size_t i = 0; ok && i < sizeof subdirs / sizeof subdirs[0]; i++) {
        char *sub = xprintf("%s/%s", fx->dir, subdirs[i]);
        ok = mkdir(sub, 0755) == 0;
        free(sub);
    }
    if (ok && kg_graphs(&text, &err) != KG_OK) {
        fprintf(stderr, "group setup: kg_graphs: %s\n", err ? err : "?");
        ok = 0;
    }
    for (char *save = NULL, *line = ok ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        fx->graphs = realloc(fx->graphs, (size_t)(fx->ngraphs + 1) * sizeof *fx->graphs);
        assert_non_null(fx->graphs);
        fx->graphs[fx->ngraphs++] = xstrdup(line);
    }
    free(text);
    free(err);
    if (ok && fx->ngraphs == 0) {
        fprintf(stderr, "group setup: kg_graphs listed no graph\n");
        ok = 0;
    }
    if (!ok)
        group_teardown(state);
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bit_identical_across_builds),
        cmocka_unit_test(fma_refused_by_newlib),
    };
    return cmocka_run_group_tests_name("identity", tests, group_setup, group_teardown);
}
