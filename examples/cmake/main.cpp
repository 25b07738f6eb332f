// The CMake example: kernels generated at build time (ln.h, rmsnorm_4x8_f64.h) called from C++,
// and the same LayerNorm JIT-compiled through kerngen.h; the two must agree bit for bit.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ln.h"
#include "rmsnorm_4x8_f64.h"
#include <kerngen.h>

int main()
{
    // the shape comes from the generated header: change rows= in CMakeLists.txt and rebuild
    const int dim = LN_GAMMA_SIZE, rows = LN_X_SIZE / LN_GAMMA_SIZE;
    std::vector<float> x(LN_X_SIZE), gamma(LN_GAMMA_SIZE, 1.5f), beta(LN_BETA_SIZE, 0.25f);
    std::vector<float> y(LN_Y_SIZE), y_jit(LN_Y_SIZE), ws(LN_FORWARD_WS_SIZE + 1);
    for (int i = 0; i < LN_X_SIZE; i++)
        x[i] = static_cast<float>((i * 7) % 11) - 4.5f;
    if (ln_forward(x.data(), gamma.data(), beta.data(), y.data(), ws.data()) != 0)
        return std::fputs("app: ln_forward: domain failure\n", stderr), 1;

    std::vector<double> xd(RMSNORM_4X8_F64_X_SIZE), gd(RMSNORM_4X8_F64_GAMMA_SIZE, 2.0);
    std::vector<double> yd(RMSNORM_4X8_F64_Y_SIZE), wsd(RMSNORM_4X8_F64_FORWARD_WS_SIZE + 1);
    for (int i = 0; i < RMSNORM_4X8_F64_X_SIZE; i++)
        xd[i] = 1.0 + i % 3;
    if (rmsnorm_4x8_f64_forward(xd.data(), gd.data(), yd.data(), wsd.data()) != 0)
        return std::fputs("app: rmsnorm_4x8_f64_forward: domain failure\n", stderr), 1;

    // the same LayerNorm through the JIT library
    std::string r = "rows=" + std::to_string(rows), d = "dim=" + std::to_string(dim);
    const char *params[] = {r.c_str(), d.c_str()};
    kg_request req = {};
    req.graph = "layernorm";
    req.params = params;
    req.nparams = 2;
    req.dtype = "f32";
    kg_kernel *k = nullptr;
    char *err = nullptr;
    if (kg_generate(&req, &k, &err) != KG_OK || kg_compile(k, &err) != KG_OK) {
        std::fprintf(stderr, "app: %s\n", err ? err : "out of memory");
        std::free(err);
        kg_free(k);
        return 2;
    }
    std::vector<float> ws_jit(kg_ws_size(k, KG_FORWARD) + 1); // the JIT unrolls: its own size
    void *args[] = {x.data(), gamma.data(), beta.data(), y_jit.data(), ws_jit.data()};
    int bad = kg_call(k, KG_FORWARD, args, 5);
    kg_free(k);
    int differ = 0;
    for (int i = 0; i < LN_Y_SIZE; i++)
        differ += y[i] != y_jit[i];
    std::printf("app: layernorm rows=%d dim=%d: y[0..2] = %.6f %.6f %.6f; JIT and AOT differ in %d of %d\n",
                rows, dim, y[0], y[1], y[2], differ, LN_Y_SIZE);
    std::printf("app: rmsnorm f64: y[0..2] = %.6f %.6f %.6f\n", yd[0], yd[1], yd[2]);
    return bad || differ || !std::isfinite(yd[0]) ? 1 : 0;
}
