/* glue.h: what run.sh tells bench.c about the emitted kernels. For every case of cases.txt,
 * glue.awk reads the generated header and lists each function it declares (forward, vjp, jvp,
 * and whatever else the generator adds, e.g. forward_train and vjp_saved) with its parameters
 * by name, their element counts (the header's size macros) and a caller taking void pointers.
 * bench.c binds arguments by name, so it needs no change when the generator adds a pass. */
#ifndef BENCH_GLUE_H
#define BENCH_GLUE_H
#include <stddef.h>

typedef struct {
    const char *name; /* the C parameter name: x, gamma, y, y_cot, x_grad, x_tan, mean, ws... */
    size_t count;     /* elements */
    int writes;       /* not const: written by the function */
} glue_arg;

typedef struct {
    const char *pass;                /* the name after the prefix: forward, vjp, vjp_saved... */
    int (*call)(void *const *args); /* args in the order of the prototype, workspace last */
    int nargs;
    const glue_arg *args;
} glue_fn;

typedef struct {
    const char *op;     /* bench operator (cases.txt): layernorm, rmsnorm, batchnorm... */
    const char *name;   /* C prefix: layernorm_8x64_f32 */
    const char *graph;  /* graph name or spec path, for the JIT */
    const char *params; /* NAME=VALUE words as given to kerngen emit */
    int f64, jit;
    int nfns;
    const glue_fn *fns;
} glue_kernel;

extern const glue_kernel glue_kernels[];
extern const int glue_nkernels;

#endif
