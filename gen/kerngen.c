/* kerngen: the command-line tool. Subcommands list, emit, run, check, dot; see usage().
 * Exit codes: 0 success, 1 a failed check, 2 bad usage or bad input (one message naming the
 * culprit, no output files written), 3 internal error. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kerngen.h"
#include "kg_check.h"
#include "kg_files.h"
#include "kg_npy.h"

enum { EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

#define PASS_LIST "forward, vjp, jvp, forward_train, vjp_saved"

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
    "  dot GRAPH ...        Graphviz of the forward graph (or --pass vjp|jvp)\n"
    "\n"
    "kerngen COMMAND --help shows the options of a command. kerngen --version prints the version.\n"
    "Exit status: 0 ok, 1 a failed check, 2 bad usage or input, 3 internal error.\n";

static const char *const GEN_OPTIONS =
    "  NAME=VALUE           a dim or attr of the graph (kerngen list shows them)\n"
    "  --dtype f32|f64      element type (default f32)\n"
    "  --semantics S        attr defaults: torchlean (default) or pytorch\n"
    "  --unroll auto|full|none  unroll policy; results are identical under all three. Default for\n"
    "                       emit: none (gcc/clang vectorize loops), for run/check: auto (tcc, the\n"
    "                       JIT, runs straight-line code faster; unrolled within a size budget)\n"
    "  --vjp derived|closed use the tape VJP (default) or the spec's closed form\n"
    "  --jvp derived|closed likewise for the JVP\n"
    "  --dump-ir PASS       print the IR after forward|vjp|jvp|forward_train|vjp_saved|simplify\n"
    "                       (graph) or lower|fuse|block (loops) to stderr\n"
    "  --fuse auto|none     loop fusion (default auto); none is for diagnosis: same results\n"
    "  --check-ir           run the IR checker between passes\n"
    "  --const NAME=FILE    bake input NAME into the code as a static const table (flash on a\n"
    "                       microcontroller): FILE is a .npy of its shape and --dtype. NAME is then\n"
    "                       no argument of any function: no gradient, no tangent. Repeatable\n";

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
            int flag = strcmp(key, "--check-ir") == 0 || strcmp(key, "--all") == 0;
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
            else if (strcmp(key, "--check-ir") == 0) c->req.check_ir = 1;
            else if (strcmp(key, "--all") == 0) c->all = 1;
            else if (strcmp(key, "--in") == 0) c->ins[c->nins++] = val;
            else if (strcmp(key, "--const") == 0) c->consts[c->nconsts++] = val;
            else if (strcmp(key, "--out") == 0) c->out_dir = val;
            else if (strcmp(key, "--pass") == 0) {
                int pass = kg_pass_from_name(val);
                if (pass < 0)
                    die_usage(cmd, "--pass: '%s' is not one of " PASS_LIST, val);
                if (c->pass && strcmp(cmd, "emit") != 0)
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
    return k;
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
          "--dtype --semantics --unroll --vjp --jvp --name --out --pass --dump-ir --check-ir --fuse --const");
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
               "  --out DIR            output directory (created if missing)\n",
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
            if (a->role < KG_ROLE_OUTPUT && strlen(a->file) == len && strncmp(a->file, c->ins[j], len) == 0)
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
                if (kg_arg_at(k, pass, i)->role < KG_ROLE_OUTPUT)
                    fprintf(stderr, " %s", kg_arg_at(k, pass, i)->file);
            fputs(")\n", stderr);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, pass, i);
        if (a->role >= KG_ROLE_OUTPUT)
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
        if (a->role < KG_ROLE_OUTPUT)
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
    parse(&c, "run", argc, argv, "--dtype --semantics --unroll --vjp --jvp --pass --in --out --dump-ir --check-ir --fuse --const");
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
               "An input baked in by --const NAME=FILE.npy takes no --in (nor tangent), gets no .grad.npy.\n"
               "Outputs are written only when everything succeeded. A domain failure (a standard\n"
               "deviation not > 0 and finite) is an error.\n\n%s",
               GEN_OPTIONS);
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
            if (a->role >= KG_ROLE_OUTPUT && !(rs.bufs[i] = calloc(a->count ? a->count : 1, kg_elem_size(k))))
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
            if (kg_arg_at(k, pass, i)->role >= KG_ROLE_OUTPUT)
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
    parse(&c, "check", argc, argv, "--semantics --unroll --vjp --jvp --all --seed --check-ir");
    if (c.help) {
        printf("usage: kerngen check GRAPH [NAME=VALUE...] [--semantics S] [--unroll U] [--seed N]\n"
               "                    [--vjp derived|closed] [--jvp derived|closed]\n"
               "       kerngen check --all\n\n"
               "Runs the generated kernels (JIT) and checks, each against a stated tolerance:\n"
               "  fd       f64 JVP against central finite differences of the forward\n"
               "  adjoint  dot-product test <w, J v> = <J^T w, v> between the generated VJP and JVP\n"
               "  closed   closed-form VJP and JVP (where the spec has them) against the other form\n"
               "--vjp/--jvp choose the forms checked (default derived: the tape).\n"
               "  f32      f32 against f64 on hard inputs (normal, mean 1e4, constant, tiny scale)\n"
               "--all checks every graph at its default dims and prints a table.\n"
               "Exit status 1 when a check fails.\n");
        free_cli(&c);
        return 0;
    }
    if (!c.all && !c.req.graph)
        die_usage("check", "missing GRAPH (or --all)%s", "");
    if (c.all && (c.req.graph || c.nparams))
        die_usage("check", "--all takes no GRAPH or parameters%s", "");
    kg_check_options opt = {c.seed, stdout};
    char *err = NULL;
    kg_status st = c.all ? kg_check_all(&c.req, &opt, &err) : kg_check(&c.req, &opt, &err);
    free_cli(&c);
    if (st == KG_ECHECK)
        return EXIT_CHECK;
    if (st != KG_OK)
        return report(st, err);
    return 0;
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
    } cmds[] = {{"list", cmd_list}, {"emit", cmd_emit}, {"run", cmd_run}, {"check", cmd_check}, {"dot", cmd_dot}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "kerngen: unknown command '%s' (see kerngen --help)\n", cmd);
    return EXIT_USAGE;
}
