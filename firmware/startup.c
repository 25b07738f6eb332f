/* startup.c: reset and exception handling for a Cortex-M4F under qemu-system-arm -M mps2-an386.
 *
 * The vector table (section .vectors, placed at 0x0 by mps2_an386.ld) holds the initial stack
 * pointer and the handlers. kg_fw_reset enables the FPU, copies .data from its load address,
 * zeroes .bss, opens newlib's semihosting handles and returns main's value through exit(), which
 * newlib's librdimon turns into a semihosting exit: qemu then exits with main's return code.
 * A fault prints its name over semihosting and exits with KG_FW_EXIT_FAULT.
 *
 * SysTick runs from the processor clock and counts its wraps, so kg_fw_ticks() (kg_fw.h) measures
 * elapsed time; under qemu's -icount it is a deterministic instruction count.
 *
 * Built with -nostartfiles (no crt0): nothing here needs C++ constructors or newlib's _init. */
#include <stdint.h>
#include <stdlib.h>

#include "kg_fw.h"

int main(void);
void kg_fw_reset(void);
void initialise_monitor_handles(void); /* librdimon: stdin/stdout/stderr over semihosting */

/* from mps2_an386.ld */
extern uint32_t kg_fw_data_start[], kg_fw_data_end[], kg_fw_data_load[];
extern uint32_t kg_fw_bss_start[], kg_fw_bss_end[], kg_fw_stack_top[];

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SCB_CPACR REG(0xE000ED88u)   /* coprocessor access control */
#define SYST_CSR REG(0xE000E010u)    /* SysTick control and status */
#define SYST_RVR REG(0xE000E014u)    /* SysTick reload value */
#define SYST_CVR REG(0xE000E018u)    /* SysTick current value */
#define SYST_MAX 0x00FFFFFFu         /* 24-bit down counter */

/* ARM semihosting: operation in r0, argument in r1, result in r0 (bkpt 0xAB on M-profile). */
static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void fault_exit(const char *what)
{
    const uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, KG_FW_EXIT_FAULT};
    semihost(0x04u /* SYS_WRITE0 */, "kg_fw: ");
    semihost(0x04u, what);
    semihost(0x04u, "\n");
    semihost(0x20u /* SYS_EXIT_EXTENDED: qemu exits with block[1] */, block);
    for (;;) {
    }
}

static void nmi(void) { fault_exit("NMI"); }
static void hard_fault(void) { fault_exit("HardFault"); }
static void mem_manage(void) { fault_exit("MemManage fault"); }
static void bus_fault(void) { fault_exit("BusFault"); }
static void usage_fault(void) { fault_exit("UsageFault (undefined instruction, FPU off, "
                                           "unaligned access or division by zero)"); }
static void unexpected(void) { fault_exit("unexpected exception or interrupt"); }

static volatile uint32_t systick_wraps;
static void systick(void) { systick_wraps++; }

uint64_t kg_fw_ticks(void)
{
    uint32_t wraps, value;
    do { /* read the pair without a wrap in between */
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * (SYST_MAX + 1u) + (SYST_MAX - value);
}

typedef union {
    void (*handler)(void);
    const void *stack_top;
} vector;

__attribute__((section(".vectors"), used)) static const vector vectors[16] = {
    {.stack_top = kg_fw_stack_top},
    {.handler = kg_fw_reset},
    {.handler = nmi},
    {.handler = hard_fault},
    {.handler = mem_manage},
    {.handler = bus_fault},
    {.handler = usage_fault},
    {.handler = unexpected}, {.handler = unexpected}, {.handler = unexpected},
    {.handler = unexpected},  /* 7-10 reserved */
    {.handler = unexpected},  /* SVCall */
    {.handler = unexpected},  /* DebugMonitor */
    {.handler = unexpected},  /* reserved */
    {.handler = unexpected},  /* PendSV */
    {.handler = systick},
};

void kg_fw_reset(void)
{
    /* CP10 and CP11 (the FPU) full access, before any floating-point instruction */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *src = kg_fw_data_load, *dst = kg_fw_data_start; dst < kg_fw_data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = kg_fw_bss_start; dst < kg_fw_bss_end;)
        *dst++ = 0;
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
    initialise_monitor_handles();
    exit(main());
}
