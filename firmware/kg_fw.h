/* kg_fw.h: a small driver that runs generated kernels on a Cortex-M4F (qemu-system-arm -M
 * mps2-an386, semihosting) and writes what they computed to a file on the host.
 *
 * A program lists its calls in a table and calls kg_fw_run from main:
 *
 *     static int call0(void *const *a)            // a thunk: the typed generated function
 *     { return layernorm_3x5_f32_forward(a[0], a[1], a[2], a[3], a[4]); }
 *     static const uint32_t x0[] = {...};         // input bits, made on the host
 *     static const kg_fw_arg args0[] = {{60, x0, 0}, ..., {60, NULL, 1}, {32, NULL, 0}};
 *     static const kg_fw_call calls[] = {{"layernorm_3x5_f32_forward", call0, 5, args0}};
 *     int main(void) { return kg_fw_run(calls, 1, "/tmp/results.bin"); }
 *
 * kg_fw_run gives every argument its own buffer in a static arena (8-byte aligned), copies the
 * inputs in, fills everything else with the byte 0xA5, calls the thunk and appends one record
 * per call to the results file: int32 return code, uint64 SysTick ticks of the call (both
 * little-endian), then the bytes of every argument marked `result`, in table order.
 *
 * Build and run (see firmware/README.md): startup.c, kg_fw.c and the program with
 *   arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard
 *     --specs=nano.specs --specs=rdimon.specs -nostartfiles -T firmware/mps2_an386.ld
 *   qemu-system-arm -M mps2-an386 -icount shift=0 -semihosting-config enable=on,target=native
 *     -nographic -monitor none -serial none -kernel app.elf
 * qemu's exit status is main's return value (KG_FW_EXIT_* below for the driver's own failures). */
#ifndef KG_FW_H
#define KG_FW_H

#include <stdint.h>

/* exit codes besides 0 and a program's own */
#define KG_FW_EXIT_IO 70     /* the results file could not be written */
#define KG_FW_EXIT_ARENA 71  /* the arguments of one call do not fit KG_FW_ARENA_BYTES */
#define KG_FW_EXIT_FAULT 72  /* a processor fault (startup.c prints which) */

#ifndef KG_FW_ARENA_BYTES
#define KG_FW_ARENA_BYTES (1u << 20) /* buffers of one call; RAM is 4 MiB (mps2_an386.ld) */
#endif

typedef struct {
    uint32_t bytes;   /* buffer size */
    const void *init; /* bytes copied in before the call; NULL: filled with 0xA5 */
    int result;       /* 1: written to the results file after the call */
} kg_fw_arg;

typedef struct {
    const char *name;                /* for messages */
    int (*thunk)(void *const *args); /* calls the kernel with args[0..nargs-1] */
    int nargs;
    const kg_fw_arg *args;
} kg_fw_call;

/* Runs the calls in order and writes their records to results_path on the host (semihosting);
   returns 0, KG_FW_EXIT_IO or KG_FW_EXIT_ARENA. Prints one summary line on stdout. */
int kg_fw_run(const kg_fw_call *calls, int ncalls, const char *results_path);

/* SysTick ticks since reset (processor clock; instructions under qemu -icount, see README). */
uint64_t kg_fw_ticks(void);

#endif
