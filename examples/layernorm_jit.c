/* layernorm_jit: the C library at run time. Generates LayerNorm for a shape chosen at run time,
 * JIT-compiles it with libtcc, runs forward and VJP, and prints a few numbers. Arguments are
 * bound by name (kg_arg_index); every buffer is sized from the kernel's own description.
 *     cc -std=c99 -Iruntime examples/layernorm_jit.c build/libkerngen.a \
 *        -llua5.4 -lm -lpthread -ldl -o layernorm_jit && ./layernorm_jit 4 8 */
#include <stdio.h>
#include <stdlib.h>

#include "kerngen.h"

/* One zeroed buffer per argument of the pass and one for the workspace (args[n]); inputs get
   a simple pattern, gamma ones. Returns the argument count (n + 1), or 0 out of memory. */
static int make_args(const kg_kernel *k, kg_pass pass, double **args)
{
    int n = kg_nargs(k, pass);
    for (int i = 0; i <= n; i++) {
        size_t count = i < n ? kg_arg_at(k, pass, i)->count : kg_ws_size(k, pass);
        if (!(args[i] = calloc(count + 1, sizeof(double))))
            return 0;
        for (size_t j = 0; i < n && kg_role_reads(kg_arg_at(k, pass, i)->role) && j < count; j++)
            args[i][j] = kg_arg_at(k, pass, i)->name[0] == 'g' ? 1.0 : (double)((j * 7 + (size_t)i) % 5) - 2.0;
    }
    return n + 1;
}

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
    req.passes = 1u << KG_FORWARD | 1u << KG_VJP;

    kg_kernel *k = NULL;
    char *err = NULL;
    if (kg_generate(&req, &k, &err) != KG_OK || kg_compile(k, &err) != KG_OK) {
        fprintf(stderr, "layernorm_jit: %s\n", err ? err : "out of memory");
        free(err);
        kg_free(k); /* NULL-safe: frees what kg_generate made when kg_compile failed */
        return 2;
    }
    double *fwd[16] = {0}, *vjp[16] = {0};
    int nf = make_args(k, KG_FORWARD, fwd), nv = make_args(k, KG_VJP, vjp), rc = 2;
    if (nf && nv) {
        int bad = kg_call(k, KG_FORWARD, (void *const *)fwd, nf);
        bad |= kg_call(k, KG_VJP, (void *const *)vjp, nv);
        double *y = fwd[kg_arg_index(k, KG_FORWARD, "y")], *dx = vjp[kg_arg_index(k, KG_VJP, "x.grad")];
        printf("%s: y[0..3] = %.6f %.6f %.6f %.6f\n", kg_text(k, KG_TEXT_NAME), y[0], y[1], y[2], y[3]);
        printf("%s: x_grad[0..3] = %.6f %.6f %.6f %.6f (kg_call: %d)\n", kg_text(k, KG_TEXT_NAME), dx[0], dx[1],
               dx[2], dx[3], bad);
        rc = bad != 0;
    } else {
        fputs("layernorm_jit: out of memory\n", stderr);
    }
    for (int i = 0; i < 16; i++) {
        free(fwd[i]);
        free(vjp[i]);
    }
    kg_free(k);
    return rc;
}
