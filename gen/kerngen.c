/* kerngen: the command-line tool. Subcommands list, emit, run, check, bench, dot; see usage().
 * Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (one message naming the
 * culprit, no output files written), 3 internal error. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#include "kerngen.h"
#include "kg_check.h"
#include "kg_files.h"
#include "kg_npy.h"

enum { EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

#define PASS_LIST "forward, vjp, jvp, forward_train, vjp_saved, train"

static const char *const MAIN_USAGE =
    "usage: kerngen COMMAND [ARGS]\n"
    "\n"
    "Generates shape-specialized C (forward, VJP, JVP) for neural-network layers.\n"
    "\n"
    "commands:\n"
    "  list                 graphs with their dims, attrs and defaults\n"
    "  emit GRAPH ...       write <name>.h and <name>.c for an ahead-of-time build\n"
    "  run GRAPH ...        JIT-compile a pass and run it on .npy files\n"
    "  check GRAPH ...      verify the generated derivatives numerically (also: check --all)\n"
    "  bench GRAPH ...      time generation, compilation and every pass of a kernel\n"
    "  dot GRAPH ...        Graphviz of the forward graph (or --pass vjp|jvp)\n"
    "\n"
    "kerngen COMMAND --help shows the options of a command. kerngen --version prints the version.\n"
    "Exit status: 0 ok, 1 a failed check, 2 bad usage or input, 3 internal error.\n"
    "\n"
    "environment:\n"
    "  KERNGEN_JOBS=N       threads that generate a request's passes side by side (default: the\n"
    "                       processors this process may run on; 1: one thread)\n"
    "  CC, KERNGEN_CACHE_DIR, KERNGEN_CACHE_MAX  the cc tier's compiler and cache (run --help)\n"
    "  KERNGEN_LUA_DIR=DIR  developer mode: the generator, specs and templates from DIR\n";

static const char *const GEN_OPTIONS =
    "  NAME=VALUE           a dim or attr of the graph (kerngen list shows them)\n"
    "  --dtype f32|f64      element type (default f32)\n"
    "  --semantics S        attr defaults: torchlean (default) or pytorch\n"
    "  --unroll auto|full|none  unroll policy; results are identical under all three. Default for\n"
    "                       emit: none (gcc/clang vectorize loops), for run/check: auto (tcc, the\n"
    "                       JIT, runs straight-line code faster; unrolled within a size budget,\n"
    "                       with x86-64 machine code beside its loops: README)\n"
    "  --vjp derived|closed use the tape VJP (default) or the spec's closed form\n"
    "  --jvp derived|closed likewise for the JVP\n"
    "  --dump-ir PASS       print the IR after forward|vjp|jvp|forward_train|vjp_saved|train|simplify\n"
    "                       (graph) or lower|fuse|block (loops) to stderr\n"
    "  --fuse auto|none     loop fusion (default auto); none is for diagnosis: same results\n"
    "  --fma off|on         on: a*b + c as C99 fma/fmaf, rounded once (default off). Other bits,\n"
    "                       the same on every target with a correct fma; fast with hardware FMA\n"
    "                       (-march=x86-64-v3 or native, AArch64, Cortex-M4F f32), slow without\n"
    "  --target simd|scalar the processor the loops are shaped for (default simd: jammed\n"
    "                       products, rows side by side, vector loops over lanes, none jammed\n"
    "                       under --unroll auto); scalar for cores without vector registers\n"
    "                       (Cortex-M). Same results\n"
    "  --check-ir           run the IR checker between passes\n"
    "  --wrt A,B            vjp, vjp_saved and train give only the gradients of these inputs\n"
    "  --train A,B          the trainable inputs: adds the train pass, which updates them in place\n"
    "  --optimizer O        train's update: sgd (default), momentum, adam, adamw (PyTorch's)\n"
    "  --const NAME=FILE    bake input NAME into the code as a static const table (flash on a\n"
    "                       microcontroller): FILE is a .npy of its shape and --dtype. NAME is then\n"
    "                       no argument of any function: no gradient, no tangent. Repeatable\n";

static const char *const JIT_OPTION =
    "  --jit tcc|cc|auto    the compiled tier (same results in all): tcc (default), libtcc in\n"
    "                       memory, ready in milliseconds; cc, the system C compiler ($CC, default\n"
    "                       cc: -O3 -march=native) through a cache ($KERNGEN_CACHE_DIR, else\n"
    "                       ~/.cache/kerngen), AOT speed; auto, tcc at once and cc from a\n"
    "                       background thread when ready. Without a working cc, tcc runs (a note)\n";

typedef struct {
    kg_request req;
    const char **params;
    int nparams;
    const char **ins; /* NAME=FILE */
    int nins;
    const char **consts; /* --const NAME=FILE */
    int nconsts;
    kg_const *baked;     /* their data (load_consts), as c->req.consts */
    kg_npy *npys;
    char **names;
    const char *out_dir;
    const char *pass;  /* the last --pass */
    unsigned passes;   /* every --pass, as kg_request.passes */
    int all;
    int help;
    int json;
    int report; /* emit --report */
    unsigned long seed;
} cli;

static void die_usage(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "kerngen %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see kerngen %s --help)\n", cmd);
    exit(EXIT_USAGE);
}

/* Parses argv for a command. allowed: which options this command accepts, as a list of
   option names separated by spaces, e.g. "--dtype --in --out". */
static void parse(cli *c, const char *cmd, int argc, char **argv, const char *allowed)
{
    memset(c, 0, sizeof *c);
    c->params = calloc((size_t)argc + 1, sizeof *c->params);
    c->ins = calloc((size_t)argc + 1, sizeof *c->ins);
    c->consts = calloc((size_t)argc + 1, sizeof *c->consts);
    if (!c->params || !c->ins || !c->consts)
        abort();
    c->seed = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            c->help = 1;
            return;
        }
        if (strncmp(a, "--", 2) == 0) {
            char key[32];
            size_t n = strcspn(a, "=");
            if (n >= sizeof key)
                die_usage(cmd, "unknown option '%s'", a);
            memcpy(key, a, n);
            key[n] = 0;
            /* accept the option only if it is in the allowed list as a whole word */
            const char *p = strstr(allowed, key);
            if (!p || (p[n] != ' ' && p[n] != 0) || (p != allowed && p[-1] != ' '))
                die_usage(cmd, "unknown option '%s'", a);
            int flag = strcmp(key, "--check-ir") == 0 || strcmp(key, "--all") == 0 || strcmp(key, "--json") == 0 ||
                       strcmp(key, "--report") == 0;
            const char *val = NULL;
            if (!flag) {
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    die_usage(cmd, "option '%s' needs a value", a);
            }
            if (strcmp(key, "--dtype") == 0) c->req.dtype = val;
            else if (strcmp(key, "--semantics") == 0) c->req.semantics = val;
            else if (strcmp(key, "--unroll") == 0) c->req.unroll = val;
            else if (strcmp(key, "--vjp") == 0) c->req.vjp_form = val;
            else if (strcmp(key, "--jvp") == 0) c->req.jvp_form = val;
            else if (strcmp(key, "--name") == 0) c->req.name = val;
            else if (strcmp(key, "--dump-ir") == 0) c->req.dump_ir = val;
            else if (strcmp(key, "--fuse") == 0) c->req.fuse = val;
            else if (strcmp(key, "--fma") == 0) c->req.fma = val;
            else if (strcmp(key, "--target") == 0) c->req.target = val;
            else if (strcmp(key, "--wrt") == 0) c->req.wrt = val;
            else if (strcmp(key, "--train") == 0) c->req.train = val;
            else if (strcmp(key, "--optimizer") == 0) c->req.optimizer = val;
            else if (strcmp(key, "--check-ir") == 0) c->req.check_ir = 1;
            else if (strcmp(key, "--jit") == 0) c->req.jit = val;
            else if (strcmp(key, "--json") == 0) c->json = 1;
            else if (strcmp(key, "--report") == 0) c->report = 1;
            else if (strcmp(key, "--all") == 0) c->all = 1;
            else if (strcmp(key, "--in") == 0) c->ins[c->nins++] = val;
            else if (strcmp(key, "--const") == 0) c->consts[c->nconsts++] = val;
            else if (strcmp(key, "--out") == 0) c->out_dir = val;
            else if (strcmp(key, "--pass") == 0) {
                int pass = kg_pass_from_name(val);
                if (pass < 0)
                    die_usage(cmd, "--pass: '%s' is not one of " PASS_LIST, val);
                if (c->pass && strcmp(cmd, "emit") != 0 && strcmp(cmd, "bench") != 0)
                    die_usage(cmd, "--pass given twice ('%s')", val);
                c->pass = val;
                c->passes |= 1u << pass;
            }
            else if (strcmp(key, "--seed") == 0) {
                char *end;
                errno = 0;
                c->seed = strtoul(val, &end, 10);
                if (errno || *end || !isdigit((unsigned char)*val)) /* strtoul takes " -1" */
                    die_usage(cmd, "--seed: '%s' is not a non-negative integer", val);
            }
            continue;
        }
        if (strchr(a, '=')) {
            c->params[c->nparams++] = a;
        } else if (!c->req.graph) {
            c->req.graph = a;
        } else {
            die_usage(cmd, "unexpected argument '%s' (parameters are NAME=VALUE)", a);
        }
    }
    c->req.params = c->params;
    c->req.nparams = c->nparams;
}

static void free_cli(cli *c)
{
    for (int i = 0; i < c->nconsts; i++) {
        if (c->npys)
            kg_npy_free(&c->npys[i]);
        if (c->names)
            free(c->names[i]);
    }
    free(c->npys);
    free(c->names);
    free(c->baked);
    free(c->params);
    free(c->ins);
    free(c->consts);
}

/* Prints a library error. Messages can carry text from a spec (its error() calls): control
   characters other than newline and tab are shown as '?' so no spec drives the terminal. */
static int report(kg_status st, char *err)
{
    if (!err && st == KG_ENOMEM)
        fputs("kerngen: out of memory\n", stderr);
    else {
        for (char *p = err; p && *p; p++)
            if ((unsigned char)*p < 0x20 ? *p != '\n' && *p != '\t' : *p == 0x7f)
                *p = '?';
        fprintf(stderr, "kerngen: %s\n", err ? err : "error");
    }
    free(err);
    return st == KG_EINPUT ? EXIT_USAGE : EXIT_INTERNAL;
}

static kg_pass parse_pass(const char *cmd, const char *s)
{
    int p = kg_pass_from_name(s ? s : "forward");
    if (p < 0)
        die_usage(cmd, "--pass: '%s' is not one of " PASS_LIST, s);
    return (kg_pass)p;
}

/* ---------------------------------------------------------------------------------------- */

static int cmd_list(int argc, char **argv)
{
    cli c;
    parse(&c, "list", argc, argv, "");
    if (c.help) {
        fputs("usage: kerngen list\n\nPrints every graph with its dims (and defaults), attrs (and their\n"
              "defaults under each --semantics preset), inputs and outputs.\n", stdout);
        free_cli(&c);
        return 0;
    }
    if (c.req.graph || c.nparams)
        die_usage("list", "takes no arguments, got '%s'", c.req.graph ? c.req.graph : c.params[0]);
    free_cli(&c);
    char *text, *err;
    kg_status st = kg_list(&text, &err);
    if (st != KG_OK)
        return report(st, err);
    fputs(text, stdout);
    free(text);
    return 0;
}

static int make_dir(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return 0;
        fprintf(stderr, "kerngen: --out %s: not a directory\n", dir);
        return -1;
    }
    if (mkdir(dir, 0777) != 0) {
        fprintf(stderr, "kerngen: --out %s: cannot create: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static kg_kernel *generate(cli *c, int compile, int *rc)
{
    kg_kernel *k;
    char *err;
    kg_status st = kg_generate(&c->req, &k, &err);
    if (st == KG_OK && c->req.dump_ir)
        fputs(kg_text(k, KG_TEXT_IR), stderr);
    if (st == KG_OK && compile && (st = kg_compile(k, &err)) != KG_OK)
        kg_free(k);
    if (st != KG_OK) {
        *rc = report(st, err);
        return NULL;
    }
    if (compile && strcmp(kg_tier(k), "tcc") == 0 && kg_tier_note(k)) /* cc requested, tcc runs */
        fprintf(stderr, "kerngen: %s\n", kg_tier_note(k));
    return k;
}

/* ---- emit --report: the memory a firmware developer plans ---- */

/* Runs argv (no shell) with stdout into out (NUL-terminated, truncated to cap); 0 when it exited 0. */
static int run_capture(char *const *argv, char *out, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    while (rc == 0 && (got = read(fd[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fd[0]);
    int status = 0;
    if (rc == 0 && waitpid(pid, &status, 0) < 0)
        rc = -1;
    return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Bytes of a pass's arguments (all; and the optimizer state among them). */
static size_t arg_bytes(const kg_kernel *k, kg_pass p, kg_role only, int all)
{
    size_t b = 0;
    for (int i = 0; i < kg_nargs(k, p); i++)
        if (all || kg_arg_at(k, p, i)->role == only)
            b += kg_arg_at(k, p, i)->count * kg_elem_size(k);
    return b;
}

/* The tensors of a training step (forward_train, then train), each once by file name; min:
   only inputs, outputs, saved values, trainable parameters and their optimizer state. */
static size_t step_bytes(const kg_kernel *k, int min)
{
    const kg_pass passes[2] = {KG_FORWARD_TRAIN, KG_TRAIN};
    const char *seen[256];
    int nseen = 0;
    size_t b = 0;
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < kg_nargs(k, passes[q]); i++) {
            const kg_arg *a = kg_arg_at(k, passes[q], i);
            int dup = 0;
            for (int j = 0; j < nseen; j++)
                dup |= strcmp(seen[j], a->file) == 0;
            if (dup || nseen == 256 || (min && (a->role == KG_ROLE_COTANGENT || a->role == KG_ROLE_HYPER)))
                continue;
            seen[nseen++] = a->file;
            b += a->count * kg_elem_size(k);
        }
    return b;
}

/* Cortex-M4F code size of the emitted file (arm-none-eabi-gcc -Os, one section per function):
   per pass, its function and its steps; the shared helpers apart. 0 when it could not. */
static int m4f_sizes(const kg_kernel *k, const char *dir, size_t text[KG_NPASSES], size_t *shared)
{
    char src[4096], obj[64], out[65536];
    snprintf(src, sizeof src, "%s/%s", dir, kg_text(k, KG_TEXT_SOURCE_FILE));
    snprintf(obj, sizeof obj, "/tmp/kerngen_m4f_%ld.o", (long)getpid());
    char *cc[] = {"arm-none-eabi-gcc", "-Os", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                  "-mfloat-abi=hard", "-ffunction-sections", "-c", src, "-o", obj, NULL};
    char *size[] = {"arm-none-eabi-size", "-A", obj, NULL};
    int ok = run_capture(cc, out, sizeof out) == 0 && run_capture(size, out, sizeof out) == 0;
    unlink(obj);
    if (!ok)
        return 0;
    const char *base = kg_text(k, KG_TEXT_NAME);
    size_t blen = strlen(base);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char sec[512];
        size_t bytes;
        if (sscanf(line, "%511s %zu", sec, &bytes) != 2 || strncmp(sec, ".text", 5) != 0)
            continue;
        const char *fn = sec[5] == '.' ? sec + 6 : "";
        int pass = -1;
        size_t best = 0;
        for (int p = 0; p < KG_NPASSES; p++) { /* <base>_<pass> or <base>_<pass>_<step> */
            const char *name = kg_pass_name((kg_pass)p);
            size_t n = strlen(name);
            if (strncmp(fn, base, blen) == 0 && fn[blen] == '_' && strncmp(fn + blen + 1, name, n) == 0 &&
                (fn[blen + 1 + n] == 0 || (fn[blen + 1 + n] == '_' && isdigit((unsigned char)fn[blen + 2 + n]))) &&
                n > best)
                pass = p, best = n;
        }
        if (pass >= 0)
            text[pass] += bytes;
        else
            *shared += bytes;
    }
    return 1;
}

static void print_report(const kg_kernel *k, const char *dir)
{
    size_t text[KG_NPASSES] = {0}, shared = 0;
    int m4f = m4f_sizes(k, dir, text, &shared);
    printf("  %-14s %10s %10s %10s %10s %12s\n", "bytes", "arguments", "opt. state", "workspace", "total",
           m4f ? "M4F text -Os" : "");
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!kg_has_pass(k, (kg_pass)p))
            continue;
        size_t args = arg_bytes(k, (kg_pass)p, 0, 1), ws = kg_ws_size(k, (kg_pass)p) * kg_elem_size(k);
        printf("  %-14s %10zu %10zu %10zu %10zu", kg_pass_name((kg_pass)p), args,
               arg_bytes(k, (kg_pass)p, KG_ROLE_STATE, 0), ws, args + ws);
        if (m4f)
            printf(" %12zu", text[p]);
        printf("\n");
    }
    if (m4f)
        printf("  %-14s %54zu (math functions and helpers, shared)\n", "", shared);
    else
        printf("  (no Cortex-M4F code size: arm-none-eabi-gcc and arm-none-eabi-size not found or failed)\n");
    if (kg_has_pass(k, KG_FORWARD_TRAIN) && kg_has_pass(k, KG_TRAIN)) {
        size_t ws = kg_ws_size(k, KG_FORWARD_TRAIN) > kg_ws_size(k, KG_TRAIN) ? kg_ws_size(k, KG_FORWARD_TRAIN)
                                                                              : kg_ws_size(k, KG_TRAIN);
        size_t ram = step_bytes(k, 0) + ws * kg_elem_size(k), min = step_bytes(k, 1);
        printf("  training step (forward_train, then train; one workspace): %zu bytes of RAM, %.2fx the\n"
               "  minimum %zu (inputs, outputs, saved values, trained inputs and their optimizer state)\n",
               ram, (double)ram / (double)min, min);
    }
}

/* --const NAME=FILE...: every NAME an input of the graph, once; every FILE a .npy of that
   input's shape and of --dtype, checked as run checks --in (the header before any data).
   The shapes come from the forward pass generated without the baked inputs. Sets c->req.consts;
   returns 0, or the exit status after one error line. */
static int load_consts(cli *c, const char *cmd)
{
    if (c->nconsts == 0)
        return 0;
    for (int j = 0; j < c->nconsts; j++) {
        const char *eq = strchr(c->consts[j], '=');
        if (!eq || eq == c->consts[j] || !eq[1]) {
            fprintf(stderr, "kerngen %s: --const '%s': expected NAME=FILE.npy\n", cmd, c->consts[j]);
            return EXIT_USAGE;
        }
        size_t len = (size_t)(eq - c->consts[j]);
        for (int j2 = 0; j2 < j; j2++)
            if (strncmp(c->consts[j2], c->consts[j], len + 1) == 0) {
                fprintf(stderr, "kerngen %s: --const %.*s given twice\n", cmd, (int)len, c->consts[j]);
                return EXIT_USAGE;
            }
    }
    kg_request probe = c->req; /* the inputs' shapes, quickly: forward only, loops */
    probe.passes = 1u << KG_FORWARD;
    probe.unroll = "none";
    probe.dump_ir = NULL;
    probe.check_ir = 0;
    kg_kernel *k;
    char *err;
    kg_status st = kg_generate(&probe, &k, &err);
    if (st != KG_OK)
        return report(st, err);
    c->baked = calloc((size_t)c->nconsts, sizeof *c->baked);
    c->npys = calloc((size_t)c->nconsts, sizeof *c->npys);
    c->names = calloc((size_t)c->nconsts, sizeof *c->names);
    if (!c->baked || !c->npys || !c->names)
        abort();
    int rc = 0, n = kg_nargs(k, KG_FORWARD);
    for (int j = 0; rc == 0 && j < c->nconsts; j++) {
        const char *path = strchr(c->consts[j], '=') + 1;
        int len = (int)(path - 1 - c->consts[j]);
        const kg_arg *a = NULL;
        for (int i = 0; i < n; i++) {
            const kg_arg *b = kg_arg_at(k, KG_FORWARD, i);
            if (b->role == KG_ROLE_INPUT && (int)strlen(b->name) == len && strncmp(b->name, c->consts[j], (size_t)len) == 0)
                a = b;
        }
        if (!a) {
            fprintf(stderr, "kerngen %s: --const %.*s: %s has no input of that name (inputs:", cmd, len, c->consts[j],
                    c->req.graph);
            for (int i = 0; i < n; i++)
                if (kg_arg_at(k, KG_FORWARD, i)->role == KG_ROLE_INPUT)
                    fprintf(stderr, " %s", kg_arg_at(k, KG_FORWARD, i)->name);
            fputs(")\n", stderr);
            rc = EXIT_USAGE;
            break;
        }
        char msg[512];
        kg_npy want = {(kg_npy_dtype)kg_elem_size(k), a->ndim, {0}, a->count, NULL};
        memcpy(want.shape, a->shape, sizeof want.shape);
        kg_npy *t = &c->npys[j];
        int got = kg_npy_read_expect(path, &want, t, msg, sizeof msg); /* no data read on a mismatch */
        if (got < 0)
            fprintf(stderr, "kerngen %s: %s (--const %s)\n", cmd, msg, a->name);
        if (got > 0) {
            char ws[128], fs[128];
            kg_npy_shape_str(a->ndim, a->shape, ws, sizeof ws);
            kg_npy_shape_str(t->ndim, t->shape, fs, sizeof fs);
            if (strcmp(ws, fs) != 0)
                fprintf(stderr, "kerngen %s: %s: --const %s expects shape %s, the file has %s\n", cmd, path, a->name, ws, fs);
            else
                fprintf(stderr, "kerngen %s: %s: --const %s expects %s (--dtype %s), the file has %s\n", cmd, path,
                        a->name, kg_elem_size(k) == 8 ? "float64" : "float32", kg_elem_size(k) == 8 ? "f64" : "f32",
                        t->dtype == KG_NPY_F64 ? "float64" : "float32");
        }
        if (got != 0) {
            rc = EXIT_USAGE;
            break;
        }
        if (!(c->names[j] = strdup(a->name)))
            abort();
        c->baked[j] = (kg_const){c->names[j], t->data, t->count};
    }
    kg_free(k);
    c->req.consts = c->baked;
    c->req.nconsts = rc == 0 ? c->nconsts : 0;
    return rc;
}

static int cmd_emit(int argc, char **argv)
{
    cli c;
    parse(&c, "emit", argc, argv,
          "--dtype --semantics --unroll --vjp --jvp --name --out --pass --dump-ir --check-ir --fuse --fma --target --wrt --train "
          "--optimizer --report --const");
    if (c.help) {
        printf("usage: kerngen emit GRAPH [NAME=VALUE...] [options] [--out DIR]\n\n"
               "Writes DIR/<name>.h and DIR/<name>.c (default DIR: .) holding one function per pass\n"
               "(forward, vjp, jvp, forward_train, vjp_saved; kerngen run --help says what each\n"
               "reads and writes), with every size as a macro in the header. <name> defaults to\n"
               "<graph>_<dims>_<dtype>, e.g. layernorm_8x64_f32. With --const w1=W1.npy the input w1 is\n"
               "baked into the .c as a static const table (frozen weights in flash) and leaves every\n"
               "signature; the summary line gives the tables' bytes.\n\n%s"
               "  --pass PASS          only this pass (repeat for several; default: all)\n"
               "  --name NAME          C name prefix instead of the default\n"
               "  --out DIR            output directory (created if missing)\n"
               "  --report             print each function's memory in bytes (arguments, optimizer state,\n"
               "                       workspace), a training step's RAM, and, with arm-none-eabi-gcc on\n"
               "                       the PATH, the Cortex-M4F code size at -Os\n",
               GEN_OPTIONS);
        free_cli(&c);
        return 0;
    }
    if (!c.req.graph)
        die_usage("emit", "missing GRAPH%s", "");
    int rc = 0;
    const char *dir = c.out_dir ? c.out_dir : ".";
    if (!c.req.unroll) /* AOT compilers vectorize loops; unrolled code only pays under tcc */
        c.req.unroll = "none";
    c.req.passes = c.passes; /* 0: all */
    if ((rc = load_consts(&c, "emit")) != 0) {
        free_cli(&c);
        return rc;
    }
    kg_kernel *k = generate(&c, 0, &rc);
    if (!k) {
        free_cli(&c);
        return rc;
    }
    char *err;
    if (make_dir(dir) != 0) {
        rc = EXIT_USAGE;
    } else {
        kg_status st = kg_write_files(k, dir, &err);
        if (st != KG_OK) {
            rc = report(st, err);
        } else {
            size_t statements, bytes;
            kg_stats(k, &statements, &bytes);
            printf("wrote %s/%s and %s/%s (%zu statements, %zu bytes of C", dir, kg_text(k, KG_TEXT_HEADER_FILE), dir,
                   kg_text(k, KG_TEXT_SOURCE_FILE), statements, bytes);
            if (c.nconsts > 0)
                printf("; baked tables: %zu bytes of flash", kg_table_bytes(k));
            printf(")\n");
            if (c.report)
                print_report(k, dir);
        }
    }
    kg_free(k);
    free_cli(&c);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* run: .npy in, .npy out, nothing written unless everything succeeded */

typedef struct {
    kg_npy *in;     /* per argument (inputs only) */
    void **bufs;    /* per argument, plus ws */
    int n;
} run_state;

static int load_inputs(const kg_kernel *k, kg_pass pass, cli *c, run_state *rs)
{
    int n = kg_nargs(k, pass);
    const char *dtype = kg_elem_size(k) == 8 ? "f64" : "f32";
    for (int j = 0; j < c->nins; j++) { /* every --in must name an argument, once */
        const char *eq = strchr(c->ins[j], '=');
        if (!eq || eq == c->ins[j] || !eq[1]) {
            fprintf(stderr, "kerngen run: --in '%s': expected NAME=FILE.npy\n", c->ins[j]);
            return -1;
        }
        size_t len = (size_t)(eq - c->ins[j]);
        int found = 0;
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, pass, i);
            if (kg_role_reads(a->role) && strlen(a->file) == len && strncmp(a->file, c->ins[j], len) == 0)
                found = 1;
        }
        for (int j2 = 0; j2 < j; j2++)
            if (strncmp(c->ins[j2], c->ins[j], len + 1) == 0) {
                fprintf(stderr, "kerngen run: --in %.*s given twice\n", (int)len, c->ins[j]);
                return -1;
            }
        for (int b = 0; !found && b < c->req.nconsts; b++)
            if (strlen(c->req.consts[b].name) == len && strncmp(c->req.consts[b].name, c->ins[j], len) == 0) {
                fprintf(stderr, "kerngen run: --in %.*s: that input is baked in by --const\n", (int)len, c->ins[j]);
                return -1;
            }
        if (!found) {
            fprintf(stderr, "kerngen run: --in %.*s: the %s pass has no such input (expected:", (int)len,
                    c->ins[j], c->pass ? c->pass : "forward");
            for (int i = 0; i < n; i++)
                if (kg_role_reads(kg_arg_at(k, pass, i)->role))
                    fprintf(stderr, " %s", kg_arg_at(k, pass, i)->file);
            fputs(")\n", stderr);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        if (!kg_role_reads(a->role))
            continue;
        const char *path = NULL;
        size_t len = strlen(a->file);
        for (int j = 0; j < c->nins; j++)
            if (strncmp(c->ins[j], a->file, len) == 0 && c->ins[j][len] == '=')
                path = c->ins[j] + len + 1;
        if (!path) {
            fprintf(stderr, "kerngen run: missing --in %s=FILE.npy\n", a->file);
            return -1;
        }
        char err[512];
        kg_npy want = {(kg_npy_dtype)kg_elem_size(k), a->ndim, {0}, a->count, NULL};
        memcpy(want.shape, a->shape, sizeof want.shape);
        kg_npy *t = &rs->in[i];
        int rc = kg_npy_read_expect(path, &want, t, err, sizeof err); /* no data read on a mismatch */
        if (rc < 0) {
            fprintf(stderr, "kerngen run: %s\n", err);
            return -1;
        }
        if (rc > 0) {
            char ws[128], got[128];
            kg_npy_shape_str(a->ndim, a->shape, ws, sizeof ws);
            kg_npy_shape_str(t->ndim, t->shape, got, sizeof got);
            if (strcmp(ws, got) != 0)
                fprintf(stderr, "kerngen run: %s: %s expects shape %s, the file has %s\n", path, a->file, ws, got);
            else
                fprintf(stderr, "kerngen run: %s: %s expects %s (--dtype %s), the file has %s\n", path, a->file,
                        kg_elem_size(k) == 8 ? "float64" : "float32", dtype,
                        t->dtype == KG_NPY_F64 ? "float64" : "float32");
            return -1;
        }
        rs->bufs[i] = t->data;
    }
    return 0;
}

typedef struct {
    const kg_arg *arg;
    kg_npy_dtype dtype;
    const void *data;
} npy_out;

static int write_npy(FILE *f, const void *ctx, const char *path, char **err)
{
    const npy_out *o = ctx;
    char msg[512];
    if (kg_npy_fwrite(f, o->dtype, o->arg->ndim, o->arg->shape, o->data, path, msg, sizeof msg) == 0)
        return 0;
    *err = strdup(msg);
    return -1;
}

/* Every output of the pass as DIR/<file>.npy, published as one set (kg_files.h). */
static int write_outputs(const kg_kernel *k, kg_pass pass, const char *dir, run_state *rs)
{
    int n = kg_nargs(k, pass), nt = 0;
    kg_file *files = calloc((size_t)n, sizeof *files);
    npy_out *outs = calloc((size_t)n, sizeof *outs);
    char **names = calloc((size_t)n, sizeof *names);
    int rc = files && outs && names ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        if (!kg_role_writes(a->role))
            continue;
        size_t len = strlen(a->file) + 5;
        if (!(names[nt] = malloc(len))) {
            rc = -1;
            break;
        }
        snprintf(names[nt], len, "%s.npy", a->file);
        outs[nt] = (npy_out){a, (kg_npy_dtype)kg_elem_size(k), rs->bufs[i]};
        files[nt] = (kg_file){names[nt], write_npy, &outs[nt]};
        nt++;
    }
    char *err = NULL;
    if (rc != 0)
        fputs("kerngen run: out of memory\n", stderr);
    else if ((rc = kg_files_publish(dir, files, nt, &err)) != 0)
        fprintf(stderr, "kerngen run: %s\n", err ? err : "out of memory");
    for (int i = 0; rc == 0 && i < nt; i++)
        printf("wrote %s/%s\n", dir, names[i]);
    free(err);
    for (int i = 0; names && i < nt; i++)
        free(names[i]);
    free(names);
    free(outs);
    free(files);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    cli c;
    parse(&c, "run", argc, argv,
          "--dtype --semantics --unroll --vjp --jvp --pass --in --out --dump-ir --check-ir --fuse --fma --target --jit --wrt --train "
          "--optimizer --const");
    if (c.help) {
        printf("usage: kerngen run GRAPH [NAME=VALUE...] [--dtype f32|f64] [--pass PASS]\n"
               "                  --in NAME=FILE.npy ... --out DIR\n\n"
               "JIT-compiles one pass and runs it on NumPy .npy files (C order, little-endian\n"
               "float32/float64 matching --dtype, shapes exactly as the graph says). PASS:\n"
               "  forward:       reads every input NAME, writes DIR/<output>.npy (the default)\n"
               "  vjp:           also reads <output>.cotangent, writes DIR/<input>.grad.npy for every input\n"
               "  jvp:           also reads <input>.tangent for every input, writes DIR/<output>.tangent.npy\n"
               "  forward_train: as forward, and writes DIR/<value>.saved.npy for each saved value\n"
               "  vjp_saved:     as vjp, reading <value>.saved instead of recomputing it\n"
               "  train:         as vjp_saved (gradients only of --wrt inputs), also reading opt (the\n"
               "                 hyperparameters) and each --train input's optimizer state; writes the\n"
               "                 updated inputs and states as DIR/<name>.npy\n"
               "An input baked in by --const NAME=FILE.npy takes no --in (nor tangent), gets no .grad.npy.\n"
               "Outputs are written only when everything succeeded. A domain failure (a standard\n"
               "deviation not > 0 and finite) is an error.\n\n%s%s",
               GEN_OPTIONS, JIT_OPTION);
        free_cli(&c);
        return 0;
    }
    if (!c.req.graph)
        die_usage("run", "missing GRAPH%s", "");
    if (!c.out_dir)
        die_usage("run", "missing --out DIR%s", "");
    kg_pass pass = parse_pass("run", c.pass);
    c.req.passes = 1u << pass; /* generate only what runs */
    int rc = load_consts(&c, "run");
    kg_kernel *k = rc ? NULL : generate(&c, 1, &rc);
    if (!k) {
        free_cli(&c);
        return rc;
    }
    int n = kg_nargs(k, pass);
    run_state rs = {calloc((size_t)n, sizeof(kg_npy)), calloc((size_t)n + 1, sizeof(void *)), n};
    if (!rs.in || !rs.bufs)
        abort();
    rc = EXIT_USAGE;
    if (load_inputs(k, pass, &c, &rs) == 0) {
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, pass, i);
            if (!kg_role_reads(a->role) && !(rs.bufs[i] = calloc(a->count ? a->count : 1, kg_elem_size(k))))
                abort();
        }
        void *ws = kg_ws_size(k, pass) ? calloc(kg_ws_size(k, pass), kg_elem_size(k)) : NULL;
        rs.bufs[n] = ws;
        int domain = kg_call(k, pass, rs.bufs, n + 1);
        if (domain != 0)
            fprintf(stderr, "kerngen run: %s: domain failure: a standard deviation or norm is not > 0 and "
                            "finite (e.g. eps=0 with a constant slice, or non-finite input); no outputs written\n",
                    c.req.graph);
        else if (make_dir(c.out_dir) == 0 && write_outputs(k, pass, c.out_dir, &rs) == 0)
            rc = 0;
        free(ws);
        for (int i = 0; i < n; i++)
            if (!kg_role_reads(kg_arg_at(k, pass, i)->role))
                free(rs.bufs[i]);
    }
    for (int i = 0; i < n; i++)
        kg_npy_free(&rs.in[i]);
    free(rs.in);
    free(rs.bufs);
    kg_free(k);
    free_cli(&c);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */

static int cmd_check(int argc, char **argv)
{
    cli c;
    parse(&c, "check", argc, argv, "--semantics --unroll --vjp --jvp --all --seed --check-ir --fma --jit");
    if (c.help) {
        printf("usage: kerngen check GRAPH [NAME=VALUE...] [--semantics S] [--unroll U] [--seed N]\n"
               "                    [--vjp derived|closed] [--jvp derived|closed] [--fma off|on]\n"
               "       kerngen check --all\n\n"
               "Runs the generated kernels (JIT) and checks, each against a stated tolerance:\n"
               "  fd       f64 JVP against central finite differences of the forward\n"
               "  adjoint  dot-product test <w, J v> = <J^T w, v> between the generated VJP and JVP\n"
               "  closed   closed-form VJP and JVP (where the spec has them) against the other form\n"
               "--vjp/--jvp choose the forms checked (default derived: the tape); --fma on checks\n"
               "the kernels written with fused multiply-adds (kerngen emit --help).\n"
               "  f32      f32 against f64 on hard inputs (normal, mean 1e4, constant, tiny scale)\n"
               "--all checks every graph at its default dims and prints a table.\n"
               "Exit status 1 when a check fails.\n\n%s", JIT_OPTION);
        free_cli(&c);
        return 0;
    }
    if (!c.all && !c.req.graph)
        die_usage("check", "missing GRAPH (or --all)%s", "");
    if (c.all && (c.req.graph || c.nparams))
        die_usage("check", "--all takes no GRAPH or parameters%s", "");
    kg_check_options opt = {c.seed, stdout};
    char *err = NULL;
    if (c.req.jit && (strcmp(c.req.jit, "cc") == 0 || strcmp(c.req.jit, "auto") == 0)) {
        char *note = NULL; /* the kernels are made inside kg_check: say up front what runs */
        kg_status cs = kg_cc_status(&note);
        if (cs == KG_OK)
            printf("%s%s\n", note, strcmp(c.req.jit, "auto") == 0 ? " (auto: each kernel runs tcc until its cc code is ready)" : "");
        else if (cs == KG_EINPUT)
            fprintf(stderr, "kerngen: cc tier unavailable, running tcc: %s\n", note);
        free(note);
    }
    kg_status st = c.all ? kg_check_all(&c.req, &opt, &err) : kg_check(&c.req, &opt, &err);
    free_cli(&c);
    if (st == KG_ECHECK)
        return EXIT_CHECK;
    if (st != KG_OK)
        return report(st, err);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* bench: the stopwatch of a JIT experimenter. Latencies in wall-clock time (a compile is partly
   a child process); time per call in the calling thread's CPU time (time slices taken by other
   processes do not count), per pass: warm-up, then batches, median and interquartile range. */

enum { LATENCY_RUNS = 3, MAX_BATCHES = 31, MIN_BATCHES = 5 };
#define BATCH_NS 2e6        /* a timed batch lasts at least this long */
#define PASS_BUDGET_NS 1e9  /* the batches of one pass take about this much at most */

static double clock_ns(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
static double wall_ms(void) { return clock_ns(CLOCK_MONOTONIC) * 1e-6; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    int runs;
    double median, min, max;
} latency;

static latency summarize(double *v, int n)
{
    latency l = {n, 0, 0, 0};
    if (n > 0) {
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        l.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        l.min = v[0];
        l.max = v[n - 1];
    }
    return l;
}

typedef struct {
    kg_pass pass;
    double us, q1, q3; /* per call */
    long calls;        /* per batch */
    int batches, status;
} pass_time;

/* One buffer per argument file name ("x", "mean.saved", ...) shared by every pass, so
   vjp_saved reads what forward_train saved; inputs deterministic (an LCG seeded by the name). */
typedef struct {
    const char *file;
    void *data;
} bench_buf;

static void *bench_buffer(bench_buf *bufs, int *n, const kg_kernel *k, const kg_arg *a)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(bufs[i].file, a->file) == 0)
            return bufs[i].data;
    size_t es = kg_elem_size(k), count = a->count ? a->count : 1;
    unsigned char *d = calloc(count, es);
    if (!d)
        abort();
    unsigned long long seed = 14695981039346656037ull;
    for (const char *p = a->file; *p; p++)
        seed = (seed ^ (unsigned char)*p) * 1099511628211ull;
    int positive = a->init && strcmp(a->init, "positive") == 0;
    /* a linear map's weights w[out][in]: about normal with variance 1/(3 in), as torch.nn.Linear's
       uniform(-1/sqrt(in), 1/sqrt(in)); unit-normal weights would push a layer's outputs into
       GELU's far tail, where subnormal results make the time meaningless */
    double scale = a->init && strcmp(a->init, "linear") == 0 && a->ndim > 0
                       ? 1 / sqrt(3.0 * (double)a->shape[a->ndim - 1]) : 1;
    static const double hyper[] = {1e-3, 0.9, 0.999, 1e-8, 1e-2, 1}; /* train's opt: adam's order */
    for (size_t e = 0; a->role == KG_ROLE_HYPER && e < count; e++) {
        double v = e < sizeof hyper / sizeof hyper[0] ? hyper[e] : 1e-2;
        if (es == 4) {
            float f = (float)v;
            memcpy(d + e * es, &f, es);
        } else {
            memcpy(d + e * es, &v, es);
        }
    }
    for (size_t e = 0; kg_role_reads(a->role) && a->role != KG_ROLE_HYPER && e < count; e++) {
        double u = 0;
        for (int j = 0; j < 4; j++) { /* Irwin-Hall of four uniforms: about normal */
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            u += (double)(seed >> 11) / 9007199254740992.0;
        }
        double v = positive ? 0.5 + u / 4 : (u - 2) * 1.7320508075688772 * scale;
        if (es == 4) {
            float f = (float)v;
            memcpy(d + e * es, &f, es);
        } else {
            memcpy(d + e * es, &v, es);
        }
    }
    bufs[*n].file = a->file;
    bufs[(*n)++].data = d;
    return d;
}

static double time_batch(const kg_kernel *k, kg_pass pass, void **args, int nargs, long calls)
{
    double t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < calls; i++)
        kg_call(k, pass, args, nargs);
    return clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
}

static pass_time time_pass(const kg_kernel *k, kg_pass pass, void **args, int nargs)
{
    pass_time r = {pass, 0, 0, 0, 1, 0, 0};
    r.status = kg_call(k, pass, args, nargs);
    double t;
    while ((t = time_batch(k, pass, args, nargs, r.calls)) < BATCH_NS && r.calls < (1L << 30))
        r.calls *= 2; /* the warm-up: until a batch lasts BATCH_NS */
    r.batches = t * MAX_BATCHES <= PASS_BUDGET_NS ? MAX_BATCHES : (int)(PASS_BUDGET_NS / t) | 1;
    if (r.batches < MIN_BATCHES)
        r.batches = MIN_BATCHES;
    double v[MAX_BATCHES];
    for (int b = 0; b < r.batches; b++)
        v[b] = time_batch(k, pass, args, nargs, r.calls) / (double)r.calls * 1e-3;
    qsort(v, (size_t)r.batches, sizeof *v, cmp_double);
    r.us = v[r.batches / 2];
    r.q1 = v[r.batches / 4];
    r.q3 = v[(3 * r.batches) / 4];
    return r;
}

static void json_string(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void json_latency(const char *key, const latency *l, int last)
{
    printf("    \"%s\": ", key);
    if (l->runs)
        printf("{\"median\": %.4f, \"min\": %.4f, \"max\": %.4f, \"runs\": %d}", l->median, l->min, l->max, l->runs);
    else
        fputs("null", stdout);
    puts(last ? "" : ",");
}

static void print_latency(const char *what, const latency *l, const char *comment)
{
    if (!l->runs)
        return;
    printf("  %-34s %10.3f", what, l->median);
    if (l->runs > 1)
        printf("  [%.3f, %.3f]", l->min, l->max);
    printf("  (%d run%s%s%s)\n", l->runs, l->runs > 1 ? "s" : "", comment ? ": " : "", comment ? comment : "");
}

/* rm of the private cache directory: its entries, then itself */
static void remove_cache_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    rmdir(dir);
}

static int cmd_bench(int argc, char **argv)
{
    cli c;
    parse(&c, "bench", argc, argv, "--dtype --semantics --unroll --vjp --jvp --pass --jit --json --fuse --fma --target --wrt --train --optimizer");
    if (c.help) {
        printf("usage: kerngen bench GRAPH [NAME=VALUE...] [--dtype f32|f64] [--jit tcc|cc|auto]\n"
               "                    [--pass PASS]... [--json]\n\n"
               "Times what a JIT user waits for and what a kernel costs per call, for one tier:\n"
               "  latency   kg_generate, then kg_compile: tcc; for cc an empty private cache (cold,\n"
               "            a miss) and the same cache again (warm, a hit); for auto the return of\n"
               "            kg_compile (tcc) and the moment kg_wait sees the cc tier (cold, warm).\n"
               "            Wall-clock time, %d runs (cold: 1), median and range.\n"
               "  per call  every pass (or each --pass): calls doubled until one batch lasts %.0f ms\n"
               "            (warm-up), then up to %d batches (at least %d; about %.0f s per pass),\n"
               "            the calling thread's CPU time; median and interquartile range per call.\n"
               "            Inputs are deterministic; vjp_saved reads what forward_train saved.\n"
               "The cc and auto tiers use a private cache directory, removed afterwards: your cache\n"
               "is neither read nor filled. --json prints the same as one JSON object\n"
               "(\"schema\": \"kerngen-bench-1\").\n\n%s%s",
               LATENCY_RUNS, BATCH_NS * 1e-6, MAX_BATCHES, MIN_BATCHES, PASS_BUDGET_NS * 1e-9, GEN_OPTIONS,
               JIT_OPTION);
        free_cli(&c);
        return 0;
    }
    if (!c.req.graph)
        die_usage("bench", "missing GRAPH%s", "");
    const char *jit = c.req.jit ? c.req.jit : "tcc";
    int cc = strcmp(jit, "cc") == 0, autot = strcmp(jit, "auto") == 0;
    if (!cc && !autot && strcmp(jit, "tcc") != 0)
        die_usage("bench", "--jit: '%s' is not one of tcc, cc, auto", jit);
    unsigned timed = c.passes;
    c.req.passes = c.passes;
    if (c.passes & (1u << KG_VJP_SAVED)) /* vjp_saved reads what forward_train saves */
        c.req.passes |= 1u << KG_FORWARD_TRAIN;
    char cache[4096] = "";
    if (cc || autot) {
        const char *tmp = getenv("TMPDIR");
        snprintf(cache, sizeof cache, "%s/kerngen-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(cache)) {
            fprintf(stderr, "kerngen bench: cannot create a cache directory %s: %s\n", cache, strerror(errno));
            free_cli(&c);
            return EXIT_INTERNAL;
        }
        setenv("KERNGEN_CACHE_DIR", cache, 1);
    }

    /* latency: LATENCY_RUNS kernels, generated and compiled one after the other */
    kg_kernel *k[LATENCY_RUNS] = {0};
    double gen[LATENCY_RUNS], comp[LATENCY_RUNS], ready[LATENCY_RUNS];
    int rc = 0;
    for (int i = 0; i < LATENCY_RUNS && rc == 0; i++) {
        char *err = NULL;
        double t0 = wall_ms();
        kg_status st = kg_generate(&c.req, &k[i], &err);
        double t1 = wall_ms();
        if (st == KG_OK)
            st = kg_compile(k[i], &err);
        double t2 = wall_ms();
        if (st == KG_OK)
            kg_wait(k[i]);
        double t3 = wall_ms();
        if (st != KG_OK) {
            rc = report(st, err);
            break;
        }
        gen[i] = t1 - t0, comp[i] = t2 - t1, ready[i] = t3 - t1;
    }
    kg_kernel *last = k[LATENCY_RUNS - 1];
    const char *tier = rc == 0 ? kg_tier(last) : "none";
    int got_cc = strcmp(tier, "cc") == 0;
    latency none = {0, 0, 0, 0}, l_gen = none, l_tcc = none, l_cold = none, l_warm = none, r_cold = none,
            r_warm = none;
    if (rc == 0) {
        l_gen = summarize(gen, LATENCY_RUNS);
        if (!cc || !got_cc)
            l_tcc = summarize(comp, LATENCY_RUNS);
        if (cc && got_cc) {
            l_cold = summarize(comp, 1);
            l_warm = summarize(comp + 1, LATENCY_RUNS - 1);
        }
        if (autot && got_cc) {
            r_cold = summarize(ready, 1);
            r_warm = summarize(ready + 1, LATENCY_RUNS - 1);
        }
    }
    if (rc == 0 && c.json && (cc || autot) && !got_cc && kg_tier_note(last)) /* the table says it */
        fprintf(stderr, "kerngen: %s\n", kg_tier_note(last));

    /* time per call, on the last kernel, in its final tier */
    pass_time times[KG_NPASSES];
    int ntimes = 0;
    if (rc == 0) {
        bench_buf bufs[256];
        int nbufs = 0;
        size_t ws = 0;
        for (int p = 0; p < KG_NPASSES; p++)
            if (kg_ws_size(last, (kg_pass)p) > ws)
                ws = kg_ws_size(last, (kg_pass)p);
        void *wsbuf = calloc(ws ? ws : 1, kg_elem_size(last));
        void **args[KG_NPASSES] = {0};
        for (int p = 0; p < KG_NPASSES; p++) {
            if (!kg_has_pass(last, (kg_pass)p))
                continue;
            int n = kg_nargs(last, (kg_pass)p);
            if (!(args[p] = calloc((size_t)n + 1, sizeof *args[p])) || !wsbuf || nbufs + n > 256)
                abort();
            for (int i = 0; i < n; i++)
                args[p][i] = bench_buffer(bufs, &nbufs, last, kg_arg_at(last, (kg_pass)p, i));
            args[p][n] = wsbuf;
        }
        if (args[KG_FORWARD_TRAIN]) /* saved values for vjp_saved, whatever is timed */
            kg_call(last, KG_FORWARD_TRAIN, args[KG_FORWARD_TRAIN], kg_nargs(last, KG_FORWARD_TRAIN) + 1);
        for (int p = 0; p < KG_NPASSES; p++)
            if (args[p] && (!timed || (timed & (1u << p))))
                times[ntimes++] = time_pass(last, (kg_pass)p, args[p], kg_nargs(last, (kg_pass)p) + 1);
        for (int p = 0; p < KG_NPASSES; p++)
            free(args[p]);
        for (int i = 0; i < nbufs; i++)
            free(bufs[i].data);
        free(wsbuf);
    }

    if (rc == 0 && c.json) {
        printf("{\n  \"schema\": \"kerngen-bench-1\",\n  \"kerngen\": \"%s\",\n  \"graph\": ", KG_VERSION);
        json_string(c.req.graph);
        fputs(",\n  \"kernel\": ", stdout);
        json_string(kg_text(last, KG_TEXT_NAME));
        fputs(",\n  \"params\": ", stdout);
        json_string(kg_text(last, KG_TEXT_PARAMS));
        printf(",\n  \"dtype\": \"%s\",\n  \"jit\": {\"requested\": \"%s\", \"tier\": \"%s\", \"note\": ",
               kg_elem_size(last) == 8 ? "f64" : "f32", jit, tier);
        json_string(kg_tier_note(last));
        printf("},\n  \"method\": {\"latency_clock\": \"wall (CLOCK_MONOTONIC)\", \"latency_runs\": %d, "
               "\"cold_runs\": 1, \"cache\": %s, \"call_clock\": \"thread CPU time (CLOCK_THREAD_CPUTIME_ID)\", "
               "\"warmup\": \"calls doubled until a batch lasts %.0f ms\", \"max_batches\": %d, "
               "\"statistic\": \"median and interquartile range (q1, q3) of the per-call time over the batches\"},\n",
               LATENCY_RUNS, cc || autot ? "\"private, empty at start, removed after\"" : "null", BATCH_NS * 1e-6,
               MAX_BATCHES);
        puts("  \"latency_ms\": {");
        json_latency("generate", &l_gen, 0);
        json_latency("compile_tcc", &l_tcc, 0);
        json_latency("compile_cc_cold", &l_cold, 0);
        json_latency("compile_cc_warm", &l_warm, 0);
        json_latency("cc_ready_cold", &r_cold, 0);
        json_latency("cc_ready_warm", &r_warm, 1);
        puts("  },\n  \"passes\": [");
        for (int i = 0; i < ntimes; i++)
            printf("    {\"pass\": \"%s\", \"us_per_call\": %.6g, \"q1\": %.6g, \"q3\": %.6g, \"calls_per_batch\": %ld, "
                   "\"batches\": %d, \"status\": %d}%s\n",
                   kg_pass_name(times[i].pass), times[i].us, times[i].q1, times[i].q3, times[i].calls,
                   times[i].batches, times[i].status, i + 1 < ntimes ? "," : "");
        puts("  ]\n}");
    } else if (rc == 0) {
        printf("kerngen bench %s %s, %s: --jit %s, running %s\n", c.req.graph, kg_text(last, KG_TEXT_PARAMS),
               kg_elem_size(last) == 8 ? "f64" : "f32", jit, tier);
        if (kg_tier_note(last))
            printf("  (%s)\n", kg_tier_note(last));
        printf("latency, wall clock, ms: median [min, max]\n");
        print_latency("generate", &l_gen, NULL);
        print_latency(autot ? "compile tcc (kg_compile returns)" : "compile tcc", &l_tcc, NULL);
        print_latency("compile cc, cold (cache miss)", &l_cold, "an empty private cache");
        print_latency("compile cc, warm (cache hit)", &l_warm, NULL);
        print_latency("cc ready, cold (cache miss)", &r_cold, "kg_compile to kg_wait, generating the cc text too");
        print_latency("cc ready, warm (cache hit)", &r_warm, NULL);
        printf("time per call (%s tier), the calling thread's CPU time: calls doubled until one batch\n"
               "lasts %.0f ms (warm-up), then timed batches; median and interquartile range (q1, q3)\n"
               "of the per-call time over the batches:\n", tier, BATCH_NS * 1e-6);
        printf("  %-15s %12s %12s %12s %12s %8s\n", "pass", "us/call", "q1", "q3", "calls/batch", "batches");
        for (int i = 0; i < ntimes; i++)
            printf("  %-15s %12.4g %12.4g %12.4g %12ld %8d%s\n", kg_pass_name(times[i].pass), times[i].us,
                   times[i].q1, times[i].q3, times[i].calls, times[i].batches,
                   times[i].status ? "  (domain failure on these inputs)" : "");
    }
    for (int i = 0; i < LATENCY_RUNS; i++)
        kg_free(k[i]);
    if (cache[0])
        remove_cache_dir(cache);
    free_cli(&c);
    return rc;
}

static int cmd_dot(int argc, char **argv)
{
    cli c;
    parse(&c, "dot", argc, argv, "--dtype --semantics --vjp --jvp --pass");
    if (c.help) {
        printf("usage: kerngen dot GRAPH [NAME=VALUE...] [--pass " PASS_LIST "]\n\n"
               "Prints the graph (after simplify) in Graphviz dot: kerngen dot layernorm | dot -Tsvg > ln.svg\n");
        free_cli(&c);
        return 0;
    }
    if (!c.req.graph)
        die_usage("dot", "missing GRAPH%s", "");
    parse_pass("dot", c.pass);
    char *text, *err;
    kg_status st = kg_dot(&c.req, c.pass ? c.pass : "forward", &text, &err);
    free_cli(&c);
    if (st != KG_OK)
        return report(st, err);
    fputs(text, stdout);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(MAIN_USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(MAIN_USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("kerngen %s\n", KG_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"list", cmd_list}, {"emit", cmd_emit}, {"run", cmd_run}, {"check", cmd_check},
                  {"bench", cmd_bench}, {"dot", cmd_dot}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "kerngen: unknown command '%s' (see kerngen --help)\n", cmd);
    return EXIT_USAGE;
}
