/* kg_jit: every libtcc call lives here. Debian 12 ships libtcc 0.9.27: tcc_relocate takes
 * (s, TCC_RELOCATE_AUTO) and libtcc keeps process-wide state whose lazy init races, so all
 * use is serialized behind one mutex. The unit is hermetic (-nostdlib -nostdinc): it declares
 * the one libm function generated code calls (sqrt, sqrtf; exp, erf, erfc and tanh are emitted
 * with the kernel) and we pass the addresses with tcc_add_symbol, which
 * avoids parsing libc headers (most of tcc's compile time) and any dependency on tcc's own
 * include and library paths.
 *
 * Out of memory. libtcc cannot survive a failed allocation: outside tcc_compile_string it
 * calls exit(1), inside it its error cleanup can crash on half-built tables. So build.sh links a
 * copy of libtcc whose malloc, calloc, realloc, free and exit are ours (kg__tcc_*):
 *  - an allocation the system refuses is served from an emergency reserve (RESERVE bytes,
 *    taken at the first compile), so libtcc never sees a failure and finishes what it does;
 *    kg_compile then deletes that state and returns KG_ENOMEM, and the reserve is reset;
 *  - an exit() jumps back to the guard around our libtcc calls (KG_ENOMEM; that state leaks).
 * What remains: a compilation that exhausts the reserve as well meets libtcc's own handling. */
#define _POSIX_C_SOURCE 200809L
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libtcc.h>

#include "kg_internal.h"

/* 1 on an x86-64 processor (and OS) with AVX2 and FMA */
static int kg_host_avx2(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init(); /* libgcc's check includes the OS saving the ymm registers (XCR0) */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;
static jmp_buf *tcc_guard; /* set while we are inside libtcc (under tcc_lock) */

/* ---------------------------------------------------------------------------------------- */
/* libtcc's allocator and exit, renamed to these at link time (build.sh); used under tcc_lock */

void *kg__tcc_malloc(size_t n);
void *kg__tcc_calloc(size_t n, size_t size);
void *kg__tcc_realloc(void *p, size_t n);
void kg__tcc_free(void *p);
void kg__tcc_exit(int status);

enum { RESERVE = 32 << 20, HEADER = 16 }; /* the header keeps a block's size, 16-aligned */
static unsigned char *reserve;           /* virtual memory: untouched pages cost nothing */
static size_t reserve_used;              /* bump allocation; reset when a compile ends */

static int in_reserve(const void *p)
{
    return reserve && (const unsigned char *)p >= reserve && (const unsigned char *)p < reserve + RESERVE;
}

static void *from_reserve(size_t n)
{
    size_t need = (n + HEADER + 15) & ~(size_t)15;
    if (!reserve || n > RESERVE || need > RESERVE - reserve_used)
        return NULL;
    unsigned char *p = reserve + reserve_used;
    reserve_used += need;
    memcpy(p, &n, sizeof n);
    return p + HEADER;
}

void *kg__tcc_malloc(size_t n)
{
    void *p = malloc(n);
    return p || !n ? p : from_reserve(n);
}

void *kg__tcc_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p || !n || !size || n > SIZE_MAX / size)
        return p;
    if ((p = from_reserve(n * size)))
        memset(p, 0, n * size);
    return p;
}

void *kg__tcc_realloc(void *p, size_t n)
{
    if (!p)
        return kg__tcc_malloc(n);
    size_t old;
    if (in_reserve(p)) {
        memcpy(&old, (unsigned char *)p - HEADER, sizeof old);
    } else {
        void *q = realloc(p, n);
        if (q || !n)
            return q;
        old = malloc_usable_size(p);
    }
    void *q = n ? from_reserve(n) : NULL;
    if (q) {
        memcpy(q, p, old < n ? old : n);
        kg__tcc_free(p);
    }
    return q;
}

void kg__tcc_free(void *p)
{
    if (!in_reserve(p))
        free(p);
}

/* Back to the guard, never out of the host process. */
void kg__tcc_exit(int status)
{
    (void)status;
    if (tcc_guard)
        longjmp(*tcc_guard, 1);
    abort(); /* unreachable: every libtcc call runs under the guard */
}

typedef struct {
    char *text;
    int nomem; /* libtcc ran out of memory, or so did we keeping its messages */
} messages;

static void on_error(void *opaque, const char *msg)
{
    messages *m = opaque;
    if (strstr(msg, "memory full") && !strstr(msg, "vstack")) /* the value stack is a fixed array */
        m->nomem = 1;
    char *prev = m->text;
    m->text = prev ? kg_strdupf("%s\n%s", prev, msg) : kg_strdup(msg);
    if (!m->text)
        m->nomem = 1;
    free(prev);
}

/* ISO C has no cast between object and function pointers; copy the representation. */
#define FN_TO_PTR(f) fn_to_ptr((void (*)(void))(f))
static void *fn_to_ptr(void (*f)(void))
{
    void *p;
    memcpy(&p, &f, sizeof p);
    return p;
}

/* Addresses of the externals a hermetic JIT unit may call: sqrt and, under the fma option, fma
   (the generated code's only libm functions: exp, erf, erfc and tanh are emitted with the
   kernel, gen/mathfn.lua; glibc's fma and fmaf are correctly rounded), and memset,
   which tcc emits for zero-initialized local arrays. */
static void *jit_symbol(const char *name)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } table[] = {
        {"sqrt", (void (*)(void))sqrt},
        {"sqrtf", (void (*)(void))sqrtf},
        {"fma", (void (*)(void))fma},
        {"fmaf", (void (*)(void))fmaf},
        {"memset", (void (*)(void))memset},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return FN_TO_PTR(table[i].fn);
    return NULL;
}

/* Runs under tcc_lock with tcc_guard set. Returns 0, or -1 (see m). */
static int compile_locked(kg_kernel *k, TCCState **state, messages *m)
{

    TCCState *s = *state = tcc_new();
    if (!s)
        return m->nomem = 1, -1;
    tcc_set_error_func(s, m, on_error);
    tcc_set_options(s, "-nostdlib -nostdinc");
    tcc_set_output_type(s, TCC_OUTPUT_MEMORY);
    /* the JIT's loops as machine code where this processor runs it (gen/x86.lua), with the
       library's array math functions (gen/mathlib.lua) */
    int avx2 = kg_host_avx2();
    tcc_define_symbol(s, "KG_X86_AVX2", avx2 ? "1" : "0");
    tcc_define_symbol(s, "KG_X86_VMATH", avx2 && kg_vm_plain_count ? "1" : "0");
    if (tcc_compile_string(s, k->text[KG_TEXT_JIT_SOURCE]) < 0)
        return -1;
    for (int i = 0; i < k->nlibm; i++) {
        char name[32];
        snprintf(name, sizeof name, "%sf", k->libm[i]);
        tcc_add_symbol(s, k->libm[i], jit_symbol(k->libm[i]));
        tcc_add_symbol(s, name, jit_symbol(name));
    }
    tcc_add_symbol(s, "memset", jit_symbol("memset"));
    for (size_t i = 0; avx2 && i < kg_vm_plain_count; i++)
        tcc_add_symbol(s, kg_vm_plain[i].name, FN_TO_PTR(kg_vm_plain[i].fn));
    for (size_t i = 0; avx2 && i < kg_vm_fma_count; i++)
        tcc_add_symbol(s, kg_vm_fma[i].name, FN_TO_PTR(kg_vm_fma[i].fn));
    if (tcc_relocate(s, TCC_RELOCATE_AUTO) < 0)
        return -1;
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!k->fns[p].fn)
            continue; /* pass not generated */
        char entry[64];
        snprintf(entry, sizeof entry, "kg_entry_%s", kg_pass_name((kg_pass)p));
        void *sym = tcc_get_symbol(s, entry);
        if (!sym)
            return -1;
        memcpy(&k->entry[p], &sym, sizeof sym);
    }
    return 0;
}

kg_status kg_jit_compile_tcc(kg_kernel *k, char **err)
{
    *err = NULL;
    if (k->tcc)
        return KG_OK;
    /* static, not local: longjmp leaves locals changed after setjmp indeterminate (C99 7.13.2.1) */
    static messages m;
    static TCCState *s;
    jmp_buf guard;
    volatile int rc = -1, exited = 0;
    pthread_mutex_lock(&tcc_lock);
    if (!reserve && !(reserve = malloc(RESERVE))) {
        pthread_mutex_unlock(&tcc_lock);
        return KG_ENOMEM;
    }
    m.text = NULL;
    m.nomem = 0;
    s = NULL;
    tcc_guard = &guard;
    if (setjmp(guard) == 0) {
        rc = compile_locked(k, &s, &m);
        if (reserve_used) /* the system refused memory: this state may not outlive the reserve */
            rc = -1, m.nomem = 1;
    } else { /* libtcc called exit() */
        rc = -1;
        exited = m.nomem = 1;
    }
    if (rc == 0)
        k->tcc = s;
    else if (s && !exited && setjmp(guard) == 0)
        tcc_delete(s);
    if (!exited)
        reserve_used = 0; /* nothing of that compilation is left */
    tcc_guard = NULL;
    messages got = m;
    pthread_mutex_unlock(&tcc_lock);
    kg_status st = KG_OK;
    if (rc != 0) {
        memset(k->entry, 0, sizeof k->entry);
        st = got.nomem ? KG_ENOMEM : KG_EINTERNAL;
        *err = got.nomem ? kg_strdup("out of memory (libtcc)")
                         : kg_strdupf("internal error: libtcc could not compile %s: %s", k->text[KG_TEXT_NAME],
                                      got.text ? got.text : "(no message)");
        if (!*err)
            st = KG_ENOMEM;
    }
    free(got.text);
    return st;
}

int kg_call(const kg_kernel *k, kg_pass pass, void *const *args, int nargs)
{
    if ((unsigned)pass >= KG_NPASSES)
        return KG_CALL_NO_PASS;
    /* acquire: the cc tier may be replacing this pointer now (kg_tier.c says why this is safe) */
    int (*entry)(void *const *) = __atomic_load_n(&k->entry[pass], __ATOMIC_ACQUIRE);
    if (!entry)
        return KG_CALL_NO_PASS;
    const struct kg_fn *f = &k->fns[pass];
    if (!args || nargs != f->nargs + 1 || (f->ws && !args[f->nargs]))
        return KG_CALL_BAD_ARGS;
    for (int i = 0; i < f->nargs; i++)
        if (!args[i] && f->args[i].count)
            return KG_CALL_BAD_ARGS;
    return entry(args);
}

void kg_jit_release(kg_kernel *k)
{
    kg_tier_release(k); /* first: a background compile reads the kernel */
    if (!k->tcc)
        return;
    pthread_mutex_lock(&tcc_lock);
    jmp_buf guard;
    tcc_guard = &guard;
    if (setjmp(guard) == 0) /* should tcc_delete ever exit(), we live on (and leak) */
        tcc_delete(k->tcc);
    tcc_guard = NULL;
    pthread_mutex_unlock(&tcc_lock);
    k->tcc = NULL;
    memset(k->entry, 0, sizeof k->entry);
}
