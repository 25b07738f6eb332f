/* kg_jit: every libtcc call lives here. Debian 12 ships libtcc 0.9.27: tcc_relocate takes
 * (s, TCC_RELOCATE_AUTO) and libtcc keeps process-wide state whose lazy init races, so all
 * use is serialized behind one mutex. The unit is hermetic (-nostdlib -nostdinc): it declares
 * the one libm function generated code calls (sqrt, sqrtf; exp, erf, erfc and tanh are emitted
 * with the kernel) and we pass the addresses with tcc_add_symbol, which
 * avoids parsing libc headers (most of tcc's compile time) and any dependency on tcc's own
 * include and library paths. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libtcc.h>

#include "kg_internal.h"

static pthread_mutex_t tcc_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    char *text;
} messages;

static void on_error(void *opaque, const char *msg)
{
    messages *m = opaque;
    char *prev = m->text;
    m->text = prev ? kg_strdupf("%s\n%s", prev, msg) : kg_strdup(msg);
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

/* Addresses of the externals a hermetic JIT unit may call: sqrt (the generated code's only libm
   function: exp, erf, erfc and tanh are emitted with the kernel, gen/mathfn.lua), and memset,
   which tcc emits for zero-initialized local arrays. */
static void *jit_symbol(const char *name)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } table[] = {
        {"sqrt", (void (*)(void))sqrt},
        {"sqrtf", (void (*)(void))sqrtf},
        {"memset", (void (*)(void))memset},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return FN_TO_PTR(table[i].fn);
    return NULL;
}

static kg_status compile_locked(kg_kernel *k, messages *m, char **err)
{
    static const char *entries[KG_NPASSES] = {"kg_entry_forward", "kg_entry_vjp", "kg_entry_jvp"};
    TCCState *s = tcc_new();
    if (!s) {
        *err = kg_strdup("tcc_new failed");
        return KG_EINTERNAL;
    }
    k->tcc = s;
    tcc_set_error_func(s, m, on_error);
    tcc_set_options(s, "-nostdlib -nostdinc");
    tcc_set_output_type(s, TCC_OUTPUT_MEMORY);
    if (tcc_compile_string(s, k->text[KG_TEXT_JIT_SOURCE]) < 0)
        goto fail;
    for (int i = 0; i < k->nlibm; i++) {
        char *f = kg_strdupf("%sf", k->libm[i]);
        tcc_add_symbol(s, k->libm[i], jit_symbol(k->libm[i]));
        tcc_add_symbol(s, f, jit_symbol(f));
        free(f);
    }
    tcc_add_symbol(s, "memset", jit_symbol("memset"));
    if (tcc_relocate(s, TCC_RELOCATE_AUTO) < 0)
        goto fail;
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!k->fns[p].fn)
            continue; /* pass not generated */
        void *sym = tcc_get_symbol(s, entries[p]);
        if (!sym)
            goto fail;
        memcpy(&k->entry[p], &sym, sizeof sym);
    }
    return KG_OK;
fail:
    *err = kg_strdupf("internal error: libtcc could not compile %s: %s", k->text[KG_TEXT_NAME],
                      m->text ? m->text : "(no message)");
    tcc_delete(s);
    k->tcc = NULL;
    return KG_EINTERNAL;
}

kg_status kg_compile(kg_kernel *k, char **err)
{
    *err = NULL;
    if (k->tcc)
        return KG_OK;
    messages m = {NULL};
    pthread_mutex_lock(&tcc_lock);
    kg_status st = compile_locked(k, &m, err);
    pthread_mutex_unlock(&tcc_lock);
    free(m.text);
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
    tcc_delete(k->tcc);
    pthread_mutex_unlock(&tcc_lock);
    k->tcc = NULL;
    memset(k->entry, 0, sizeof k->entry);
}
