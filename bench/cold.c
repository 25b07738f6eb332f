/* bench/cold.c: the JIT's latency as a new process meets it (bench/run.sh, step 5).
 *   cold GRAPH PASS[,PASS...] [NAME=VALUE...]
 *       one kg_generate + kg_compile (tcc) of that request in this fresh process, the first
 *       kerngen call it makes: prints the milliseconds of each and their sum
 *   cold --process PROGRAM [ARG...]
 *       runs PROGRAM once (posix_spawnp, output to /dev/null): prints its wall-clock milliseconds
 *   cold --inputs DIR GRAPH [NAME=VALUE...]
 *       writes the forward pass's f32 inputs as DIR/<name>.npy (values sin(i) + 2) and prints
 *       the --in options of `kerngen run` that read them
 * run.sh runs the first two many times and reports the medians against issue 9's targets. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "kerngen.h"
#include "kg_npy.h"

extern char **environ;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int run_process(char **argv)
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    double t0 = now_ms();
    int ok = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) == 0 && waitpid(pid, &status, 0) == pid &&
             WIFEXITED(status) && WEXITSTATUS(status) == 0;
    double ms = now_ms() - t0;
    posix_spawn_file_actions_destroy(&fa);
    if (!ok) {
        fprintf(stderr, "cold: %s failed\n", argv[0]);
        return 1;
    }
    printf("%.3f\n", ms);
    return 0;
}

static int write_inputs(const char *dir, kg_request *r)
{
    kg_kernel *k;
    char *err, msg[256], path[4096];
    r->passes = 1u << KG_FORWARD;
    if (kg_generate(r, &k, &err) != KG_OK) {
        fprintf(stderr, "cold: %s\n", err);
        return 1;
    }
    for (int i = 0; i < kg_nargs(k, KG_FORWARD); i++) {
        const kg_arg *a = kg_arg_at(k, KG_FORWARD, i);
        if (a->role != KG_ROLE_INPUT)
            continue;
        float *v = malloc(a->count * sizeof *v);
        for (size_t j = 0; v && j < a->count; j++)
            v[j] = (float)(sin((double)j) + 2.0);
        snprintf(path, sizeof path, "%s/%s.npy", dir, a->file);
        if (!v || kg_npy_write(path, KG_NPY_F32, a->ndim, a->shape, v, msg, sizeof msg) != 0) {
            fprintf(stderr, "cold: %s\n", v ? msg : "out of memory");
            return 1;
        }
        free(v);
        printf("--in %s=%s ", a->file, path);
    }
    printf("\n");
    kg_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--process") == 0)
        return run_process(argv + 2);
    int inputs = argc >= 4 && strcmp(argv[1], "--inputs") == 0;
    if (argc < 3) {
        fprintf(stderr, "usage: cold GRAPH PASS[,PASS...] [NAME=VALUE...] | cold --process PROGRAM [ARG...] | "
                        "cold --inputs DIR GRAPH [NAME=VALUE...]\n");
        return 2;
    }
    kg_request r;
    memset(&r, 0, sizeof r);
    r.graph = argv[inputs ? 3 : 1];
    r.params = (const char *const *)argv + (inputs ? 4 : 3);
    r.nparams = argc - (inputs ? 4 : 3);
    if (inputs)
        return write_inputs(argv[2], &r);
    for (char *p = strtok(argv[2], ","); p; p = strtok(NULL, ",")) {
        int pass = kg_pass_from_name(p);
        if (pass < 0) {
            fprintf(stderr, "cold: no pass %s\n", p);
            return 2;
        }
        r.passes |= 1u << pass;
    }
    kg_kernel *k;
    char *err;
    double t0 = now_ms();
    if (kg_generate(&r, &k, &err) != KG_OK) {
        fprintf(stderr, "cold: %s\n", err);
        return 1;
    }
    double t1 = now_ms();
    if (kg_compile(k, &err) != KG_OK) {
        fprintf(stderr, "cold: %s\n", err);
        return 1;
    }
    double t2 = now_ms();
    printf("%.3f %.3f %.3f\n", t1 - t0, t2 - t1, t2 - t0);
    kg_free(k);
    return 0;
}
