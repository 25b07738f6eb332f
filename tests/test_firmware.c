/*
 * test_firmware.c - the firmware example (examples/firmware) trains on a Cortex-M4F and on the
 * host, and all three runs end with the same bits.
 *
 * make builds the example's three programs from the one train.c, as ./build.sh firmware does,
 * with -DTRAIN_DUMP (the program then prints every bit of its final state):
 *   train.elf   arm-none-eabi-gcc -Os, the emitted block.c; run under qemu-system-arm -M
 *               mps2-an386 -icount shift=0 (firmware/)
 *   train_host  gcc -O2, the same emitted block.c (AOT)
 *   train_jit   gcc -O2 with jit.c: the kernel from libkerngen's JIT (kg_generate with the same
 *               request and baked weights, libtcc, kg_call)
 * and the test checks that
 *   - each trains STEPS steps without a domain failure, printing its losses and a digest;
 *   - the loss falls: the mean of the last 20 steps is at most LOSS_FACTOR times the loss of
 *     step 1 (measured: 0.111695 -> 0.000601, 0.0054x; the bound leaves a margin of 9x);
 *   - the loss of every step, the trained parameters (gamma, beta, b1, b2) and Adam's state
 *     (exp_avg, exp_avg_sq) are bit-identical in the three runs (and so the printed losses and
 *     digests); a difference is reported with its line, e.g. "param 37 3f7d2e10";
 *   - the RAM total the firmware prints from block.h's macros is emit --report's "training
 *     step" figure and the size of those buffers in the image (make sizes: sizes.sh), and
 *     the baked w1, w2 are the kernel object's .rodata (flash), 32768 bytes.
 * A missing tool fails the test (./build.sh test installs them all); it never skips.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>

#include "kg_aot.h"
#include "../examples/firmware/task.h"

#define STEPS 200          /* train.c */
#define PARAMS 224         /* gamma 32, beta 32, b1 128, b2 32 */
#define ADAM_STATE 448     /* two tensors per parameter */
#define LOSS_FACTOR 0.05   /* last 20 steps' mean loss <= 0.05 x step 1's loss */
#define TIMEOUT "120"      /* seconds per program */

typedef struct {
    char dir[64];           /* mkdtemp(): the make output */
    char root[PATH_MAX];    /* the repository */
    char kerngen[PATH_MAX]; /* $KERNGEN_BIN, absolute */
    char lib[PATH_MAX];     /* the libkerngen.a next to it (build/ or build-asan/) */
} fixture;

enum { DEVICE, HOST, JIT, NRUNS };
static const char *const run_names[NRUNS] = {"Cortex-M4F (qemu)", "host AOT (gcc)", "host JIT"};

/* The lines of a run's output that must be the same everywhere: losses, digest, final bits. */
typedef struct {
    char **lines;
    int n, steps, losses, params, adam;
} outcome;

static void outcome_read(outcome *o, const char *log)
{
    memset(o, 0, sizeof *o);
    char *text = slurp(log, NULL), *save = NULL;
    assert_non_null(text);
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int is_step = strncmp(l, "step ", 5) == 0, is_param = strncmp(l, "param ", 6) == 0;
        int is_adam = strncmp(l, "adam ", 5) == 0, is_loss = strncmp(l, "loss ", 5) == 0;
        if (!is_step && !is_loss && !is_param && !is_adam && strncmp(l, "digest ", 7) != 0)
            continue;
        o->steps += is_step;
        o->losses += is_loss;
        o->params += is_param;
        o->adam += is_adam;
        o->lines = realloc(o->lines, (size_t)(o->n + 1) * sizeof *o->lines);
        assert_non_null(o->lines);
        o->lines[o->n++] = xstrdup(l);
    }
    free(text);
}

static void outcome_free(outcome *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->lines[i]);
    free(o->lines);
}

/* The number after `key` on the first line holding it, or -1. */
static double number_after(const char *text, const char *key)
{
    const char *at = text ? strstr(text, key) : NULL;
    double v = -1;
    if (at && sscanf(at + strlen(key), "%lf", &v) != 1)
        v = -1;
    return v;
}

static char *file_in(const fixture *fx, const char *name)
{
    return xprintf("%s/%s", fx->dir, name);
}

static void trains_identically_on_three_targets(void **state)
{
    fixture *fx = *state;
    static const char *const tools[] = {"make", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-size",
                                        "arm-none-eabi-nm", "qemu-system-arm", "timeout"};
    for (size_t t = 0; t < sizeof tools / sizeof tools[0]; t++)
        if (!on_path(tools[t]))
            fail_msg("%s is not on PATH: ./build.sh test installs it (Debian packages make, gcc, "
                     "gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)", tools[t]);

    /* build: the example's own Makefile, into the temporary directory */
    char *example = xprintf("%s/examples/firmware", fx->root);
    char *out = xprintf("OUT=%s", fx->dir), *kg = xprintf("KERNGEN=%s", fx->kerngen);
    char *lib = xprintf("LIBKERNGEN=%s", fx->lib);
    char *inc = xprintf("KERNGEN_INCLUDE=%s/runtime", fx->root);
    char *fw = xprintf("FIRMWARE=%s/firmware", fx->root);
    char *make_log = file_in(fx, "make.log");
    job mk;
    job_init(&mk, make_log, (const char *const[]){"make", "-C", NULL}, example, out, kg, lib, inc,
             fw, "DEFS=-DTRAIN_DUMP", (const char *)NULL);
#if defined(__SANITIZE_ADDRESS__) /* ./build.sh asan: libkerngen.a is instrumented */
    job_add(&mk, "HOST_CC=gcc -fsanitize=address,undefined");
#endif
    job_add(&mk, "all");
    job_add(&mk, "sizes"); /* the flash/RAM table: examples/firmware/sizes.sh */
    run_jobs(&mk, 1);
    char *msg = job_problem(&mk);
    if (msg) {
        print_error("%s\n", msg);
        fail_msg("building the firmware example failed");
    }
    print_message("     built in %.1f s\n", mk.seconds);

    /* run: the three programs, at most MAX_PARALLEL at once */
    job runs[NRUNS];
    char *logs[NRUNS], *elf = file_in(fx, "train.elf"), *host = file_in(fx, "train_host");
    char *jit = file_in(fx, "train_jit");
    const char *const limit[] = {"timeout", TIMEOUT, NULL};
    for (int r = 0; r < NRUNS; r++)
        logs[r] = file_in(fx, r == DEVICE ? "device.log" : r == HOST ? "host.log" : "jit.log");
    job_init(&runs[DEVICE], logs[DEVICE], limit, "qemu-system-arm", "-M", "mps2-an386", "-icount",
             "shift=0", "-semihosting-config", "enable=on,target=native", "-nographic",
             "-monitor", "none", "-serial", "none", "-kernel", elf, (const char *)NULL);
    job_init(&runs[HOST], logs[HOST], limit, host, (const char *)NULL);
    job_init(&runs[JIT], logs[JIT], limit, jit, (const char *)NULL);
    run_jobs(runs, NRUNS);
    int failed = 0;
    for (int r = 0; r < NRUNS; r++) {
        char *problem = job_problem(&runs[r]);
        if (problem) {
            print_error("%s: %s\n", run_names[r], problem);
            failed++;
        }
        print_message("     %s: %.2f s\n", run_names[r], runs[r].seconds);
        free(problem);
    }
    if (failed)
        fail_msg("%d of the %d runs failed", failed, NRUNS);

    /* the same lines everywhere */
    outcome o[NRUNS];
    for (int r = 0; r < NRUNS; r++) {
        outcome_read(&o[r], logs[r]);
        if (o[r].steps != STEPS / 20 + 1 || o[r].losses != STEPS || o[r].params != PARAMS ||
            o[r].adam != ADAM_STATE)
            fail_msg("%s printed %d step lines, %d losses, %d parameters, %d state values: "
                     "expected %d, %d, %d, %d (%s)", run_names[r], o[r].steps, o[r].losses,
                     o[r].params, o[r].adam, STEPS / 20 + 1, STEPS, PARAMS, ADAM_STATE, logs[r]);
    }
    for (int r = 1; r < NRUNS; r++) {
        assert_int_equal(o[r].n, o[DEVICE].n);
        for (int i = 0; i < o[r].n; i++)
            if (strcmp(o[r].lines[i], o[DEVICE].lines[i]) != 0)
                fail_msg("%s and %s differ: '%s' and '%s' (the first difference)",
                         run_names[DEVICE], run_names[r], o[DEVICE].lines[i], o[r].lines[i]);
    }

    /* the loss falls */
    char *device = slurp(logs[DEVICE], NULL), *made = slurp(make_log, NULL);
    double first = number_after(device, "step   1  loss ");
    char *key = xprintf("step %3d  loss ", STEPS);
    const char *last_line = device ? strstr(device, key) : NULL;
    double last = number_after(last_line, "mean of the last 20: ");
    free(key);
    print_message("     loss: step 1 %.6f, mean of the last 20 steps %.6f (%.4fx; bound %.2fx)\n",
                  first, last, last / first, LOSS_FACTOR);
    assert_true(first > 0 && last >= 0);
    assert_true(last <= LOSS_FACTOR * first);

    /* RAM: the firmware's sum of block.h's sizes is emit --report's figure and the size of
       those buffers in the image; the tables are flash (.rodata) */
    double ram = number_after(device, "total (emit --report: \"training step\")");
    double report = number_after(made ? strstr(made, "training step (") : NULL, "one workspace): ");
    double in_elf = number_after(made, "training step: x y y_cot opt param adam saved ws");
    double tables = number_after(made, "w1, w2 baked by --const (block.o .rodata)");
    double code = number_after(made, "kernel code: forward_train, train (block.o .text)");
    const char *per_step = device ? strstr(device, "that is ") : NULL;
    print_message("     RAM of a training step: %.0f bytes (firmware), %.0f (emit --report), %.0f "
                  "(the image's symbols); flash: %.0f of tables, %.0f of kernel code\n"
                  "     Cortex-M4F: %.*s\n", ram, report, in_elf, tables, code,
                  per_step ? (int)strcspn(per_step, "\n") : 4, per_step ? per_step : "(no count)");
    assert_true(ram > 0);
    assert_true(ram == report);
    assert_true(ram == in_elf);
    assert_true(tables == 2 * TASK_DFF * TASK_DMODEL * 4);
    assert_true(code > 0);

    for (int r = 0; r < NRUNS; r++) {
        outcome_free(&o[r]);
        job_free(&runs[r]);
        free(logs[r]);
    }
    job_free(&mk);
    free(device);
    free(made);
    free(elf);
    free(host);
    free(jit);
    free(make_log);
    free(example);
    free(out);
    free(kg);
    free(lib);
    free(inc);
    free(fw);
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
    static fixture fx;
    const char *root = getenv("KERNGEN_ROOT"), *bin = getenv("KERNGEN_BIN");
    *state = &fx;
    if (!realpath(root && *root ? root : ".", fx.root) ||
        !realpath(bin && *bin ? bin : "build/kerngen", fx.kerngen)) {
        fprintf(stderr, "group setup: the repository or kerngen not found (run from the "
                        "repository root, or set KERNGEN_ROOT and KERNGEN_BIN)\n");
        return -1;
    }
    snprintf(fx.lib, sizeof fx.lib, "%.*s/libkerngen.a",
             (int)(strrchr(fx.kerngen, '/') - fx.kerngen), fx.kerngen);
    char *probe = xprintf("%s/examples/firmware/Makefile", fx.root);
    int ok = access(probe, R_OK) == 0 && access(fx.lib, R_OK) == 0;
    if (!ok)
        fprintf(stderr, "group setup: %s or %s missing\n", probe, fx.lib);
    free(probe);
    strcpy(fx.dir, "/tmp/kg_firmware_XXXXXX");
    if (ok && !mkdtemp(fx.dir)) {
        fprintf(stderr, "group setup: mkdtemp: %s\n", strerror(errno));
        ok = 0;
    }
    if (!ok)
        fx.dir[0] = '\0';
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    if (fx->dir[0])
        kgt_remove_tree(fx->dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trains_identically_on_three_targets),
    };
    return cmocka_run_group_tests_name("firmware", tests, group_setup, group_teardown);
}
