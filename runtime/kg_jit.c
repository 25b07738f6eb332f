/* kg_jit: every libtcc call lives here. Debian 12 ships libtcc 0.9.27: tcc_relocate takes
 * (s, TCC_RELOCATE_AUTO) and libtcc keeps process-wide state whose lazy init races, so all
 * use is serialized behind one mutex. The unit is hermetic (-nostdlib -nostdinc): it declares
 * the few libm functions it calls and we pass their addresses with tcc_add_symbol, which
 * avoids parsing libc headers (most of tcc's compile time) and any dependency on tcc's own
 * include and library paths.
 *
 * Out of memory: libtcc reports a failed allocation inside tcc_compile_string as a compile
 * error, but elsewhere (tcc_new, tcc_add_symbol, tcc_relocate) it calls exit(1). build.sh links
 * a copy of libtcc whose exit calls kg__tcc_exit instead, which jumps back to the guard around
 * our libtcc calls: kg_compile then returns KG_ENOMEM and the host process lives on. What
 * libtcc had allocated for that compilation is leaked (its state cannot be trusted after an
 * exit it did not expect to return from). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libtcc.h>

#include "kg_internal.h"

static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;
static jmp_buf *tcc_guard; /* set while we are inside libtcc (under tcc_lock) */

/* libtcc's exit(), renamed at link time (build.sh): back to the guard, never out of the host. */
void kg__tcc_exit(int status);
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
    if (strstr(msg, "memory full"))
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

/* Addresses of the externals a hermetic JIT unit may call: libm, and memset, which tcc emits
   for zero-initialized local arrays. */
static void *jit_symbol(const char *name)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } table[] = {
        {"sqrt", (void (*)(void))sqrt}, {"sqrtf", (void (*)(void))sqrtf},
        {"exp", (void (*)(void))exp},   {"expf", (void (*)(void))expf},
        {"tanh", (void (*)(void))tanh}, {"tanhf", (void (*)(void))tanhf},
        {"erf", (void (*)(void))erf},   {"erff", (void (*)(void))erff},
        {"erfc", (void (*)(void))erfc}, {"erfcf", (void (*)(void))erfcf},
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
    static const char *entries[KG_NPASSES] = {"kg_entry_forward", "kg_entry_vjp", "kg_entry_jvp"};
    TCCState *s = *state = tcc_new();
    if (!s)
        return m->nomem = 1, -1;
    tcc_set_error_func(s, m, on_error);
    tcc_set_options(s, "-nostdlib -nostdinc");
    tcc_set_output_type(s, TCC_OUTPUT_MEMORY);
    if (tcc_compile_string(s, k->text[KG_TEXT_JIT_SOURCE]) < 0)
        return -1;
    for (int i = 0; i < k->nlibm; i++) {
        char name[32];
        snprintf(name, sizeof name, "%sf", k->libm[i]);
        tcc_add_symbol(s, k->libm[i], jit_symbol(k->libm[i]));
        tcc_add_symbol(s, name, jit_symbol(name));
    }
    tcc_add_symbol(s, "memset", jit_symbol("memset"));
    if (tcc_relocate(s, TCC_RELOCATE_AUTO) < 0)
        return -1;
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!k->fns[p].fn)
            continue; /* pass not generated */
        void *sym = tcc_get_symbol(s, entries[p]);
        if (!sym)
            return -1;
        memcpy(&k->entry[p], &sym, sizeof sym);
    }
    return 0;
}

kg_status kg_compile(kg_kernel *k, char **err)
{
    *err = NULL;
    if (k->tcc)
        return KG_OK;
    /* static, not local: longjmp leaves locals changed after setjmp indeterminate (C99 7.13.2.1) */
    static messages m;
    static TCCState *s;
    jmp_buf guard;
    int rc, exited = 0;
    pthread_mutex_lock(&tcc_lock);
    m.text = NULL;
    m.nomem = 0;
    s = NULL;
    tcc_guard = &guard;
    if (setjmp(guard) == 0) {
        rc = compile_locked(k, &s, &m);
    } else { /* libtcc called exit(): out of memory outside tcc_compile_string */
        rc = -1;
        exited = m.nomem = 1;
    }
    if (rc == 0)
        k->tcc = s;
    else if (s && !exited)
        tcc_delete(s);
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

int kg_call(const kg_kernel *k, kg_pass pass, void *const *args)
{
    if (!k->entry[pass])
        return -1;
    return k->entry[pass](args);
}

void kg_jit_release(kg_kernel *k)
{
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
