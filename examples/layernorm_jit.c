/* layernorm_jit: the C library at run time. Generates LayerNorm for a shape chosen at run time,
 * JIT-compiles it with libtcc, runs forward and VJP, and prints a few numbers.
 *     cc -std=c99 -Iruntime examples/layernorm_jit.c build/libkerngen.a \
 *        -llua5.4 -lm -lpthread -ldl -o layernorm_jit && ./layernorm_jit 4 8 */
#include <stdio.h>
#include <stdlib.h>

#include "kerngen.h"

int main(int argc, char **argv)
{
    char rows[32], dim[32];
    snprintf(rows, sizeof rows, "rows=%s", argc > 1 ? argv[1] : "4");
    snprintf(dim, sizeof dim, "dim=%s", argc > 2 ? argv[2] : "8");
    const char *params[] = {rows, dim, "eps=1e-5"};
    kg_request req = {0};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 3;
    req.dtype = "f64";

    kg_kernel *k;
    char *err;
    if (kg_generate(&req, &k, &err) != KG_OK || kg_compile(k, &err) != KG_OK) {
        fprintf(stderr, "layernorm_jit: %s\n", err);
        free(err);
        return 2;
    }

    /* One buffer per argument of the VJP (x, gamma, beta, y_cot, x_grad, gamma_grad, beta_grad),
       sized from the kernel's own description; the forward's arguments are a subset. */
    int n = kg_nargs(k, KG_VJP);
    double **buf = calloc((size_t)n, sizeof *buf);
    for (int i = 0; i < n; i++) {
        const kg_arg *a = kg_arg_at(k, KG_VJP, i);
        buf[i] = calloc(a->count, sizeof(double));
        for (size_t j = 0; j < a->count; j++)
            buf[i][j] = a->role == KG_ROLE_INPUT && a->name[0] == 'g' ? 1.0 : (double)((j * 7 + (size_t)i) % 5) - 2.0;
    }
    double *y = calloc(kg_arg_at(k, KG_FORWARD, 3)->count, sizeof(double));
    void *fwd[] = {buf[0], buf[1], buf[2], y, calloc(kg_ws_size(k, KG_FORWARD) + 1, sizeof(double))};
    int bad = kg_call(k, KG_FORWARD, fwd);
    void **vjp = calloc((size_t)n + 1, sizeof *vjp);
    for (int i = 0; i < n; i++)
        vjp[i] = buf[i];
    vjp[n] = calloc(kg_ws_size(k, KG_VJP) + 1, sizeof(double));
    bad |= kg_call(k, KG_VJP, vjp);

    printf("%s: y[0..3] = %.6f %.6f %.6f %.6f\n", kg_text(k, KG_TEXT_NAME), y[0], y[1], y[2], y[3]);
    printf("%s: x_grad[0..3] = %.6f %.6f %.6f %.6f (domain failure: %d)\n", kg_text(k, KG_TEXT_NAME), buf[4][0],
           buf[4][1], buf[4][2], buf[4][3], bad);

    for (int i = 0; i < n; i++)
        free(buf[i]);
    free(buf);
    free(y);
    free(fwd[4]);
    free(vjp[n]);
    free(vjp);
    kg_free(k);
    return bad;
}
