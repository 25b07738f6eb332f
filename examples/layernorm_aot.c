/* layernorm_aot: ahead-of-time use, as in firmware. The kernel files come from
 *     kerngen emit layernorm rows=4 dim=8 --dtype f32 --out <dir>
 * and everything is static: sizes are macros of the generated header, no allocation.
 *     cc -std=c99 -O2 -I<dir> examples/layernorm_aot.c <dir>/layernorm_4x8_f32.c -lm */
#include <stdio.h>

#include "layernorm_4x8_f32.h"

static float x[LAYERNORM_4X8_F32_X_SIZE], gamma_[LAYERNORM_4X8_F32_GAMMA_SIZE], beta[LAYERNORM_4X8_F32_BETA_SIZE];
static float y[LAYERNORM_4X8_F32_Y_SIZE];
static float ws[LAYERNORM_4X8_F32_FORWARD_WS_SIZE + 1]; /* +1: C has no zero-length arrays */

int main(void)
{
    for (int i = 0; i < LAYERNORM_4X8_F32_X_SIZE; i++)
        x[i] = (float)(i % 8) + 0.25f * (float)(i / 8);
    for (int i = 0; i < LAYERNORM_4X8_F32_GAMMA_SIZE; i++) {
        gamma_[i] = 1.0f;
        beta[i] = 0.0f;
    }
    if (layernorm_4x8_f32_forward(x, gamma_, beta, y, ws) != 0) {
        fputs("layernorm_aot: domain failure\n", stderr);
        return 1;
    }
    printf("layernorm_4x8_f32: y[0..7] =");
    for (int i = 0; i < 8; i++)
        printf(" %.4f", y[i]);
    printf("\n");
    return 0;
}
