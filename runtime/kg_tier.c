/* kg_tier: which compiled code kg_call runs, and the switch from the tcc tier to the cc tier.
 *
 *   "tcc"   no tier state (k->tier NULL): kg_compile is libtcc (kg_jit.c).
 *   "cc"    kg_compile builds the cc tier (kg_cc.c) in the calling thread; when it cannot (no
 *           compiler, a failing one, an unusable cache), libtcc compiles the same text instead
 *           and kg_tier_note says why.
 *   "auto"  kg_compile compiles with libtcc and returns; one background thread per kernel builds
 *           the cc tier and switches kg_call to it. Its text: the kernel regenerated with
 *           unroll "none" (loops, which gcc vectorizes; the tcc text unrolls for tcc), when the
 *           request left unroll to the default and named a graph (a spec file could change
 *           between the two generations) and the regenerated kernel has the same arguments and
 *           workspace sizes; otherwise the tcc text itself.
 *
 * The switch is safe while other threads call the kernel. kg_call loads k->entry[pass] with
 * acquire ordering; the background thread stores each cc entry point with release ordering once
 * dlopen has returned, so a caller that sees the new pointer also sees the loaded code. A call in
 * flight finishes in the tcc code, which stays loaded until kg_free. The passes switch one by
 * one, which is harmless: both tiers compute the same bits. These are the GCC/Clang __atomic
 * builtins, not <stdatomic.h>: the project is C99 (-std=c99) and only this file and kg_call touch
 * the pointers concurrently.
 *
 * kg_free (kg_tier_release) cancels: it sets the abort flag, sends SIGTERM to the compiler's
 * process group, wakes a compile waiting for a compiler slot, joins the thread (a regeneration
 * in progress is waited for), then unloads the cc code. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "kg_internal.h"

enum { MODE_CC = 1, MODE_AUTO };
enum { TIER_NONE, TIER_TCC, TIER_CC };

struct kg_tier {
    int mode;
    int current;          /* TIER_*; __atomic */
    int running;          /* a background compile has not finished; __atomic, set under mu */
    kg_request req;       /* "auto": the request regenerated with unroll "none" (owned strings) */
    char **params;
    int regenerate;
    kg_cc_env env;        /* captured by kg_compile */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;   /* with cv: running, note */
    pthread_cond_t cv;
    char *note;           /* kg_tier_note; written before running is cleared */
    void *dl;             /* the cc code (dlopen handle) */
    kg_cc_abort ab;
};

static const char *const TIER_NAMES[] = {"none", "tcc", "cc"};

kg_status kg_tier_prepare(const kg_request *req, kg_request *gen, char **err)
{
    *gen = *req;
    if (!req->jit || strcmp(req->jit, "tcc") == 0 || strcmp(req->jit, "auto") == 0)
        return KG_OK;
    if (strcmp(req->jit, "cc") == 0) {
        if (!gen->unroll)
            gen->unroll = "none"; /* the text is for gcc/clang, which vectorize loops */
        return KG_OK;
    }
    *err = kg_strdupf("--jit: '%s' is not one of tcc, cc, auto", req->jit);
    return *err ? KG_EINPUT : KG_ENOMEM;
}

static void free_request(struct kg_tier *t)
{
    free((char *)t->req.graph);
    free((char *)t->req.dtype);
    free((char *)t->req.semantics);
    free((char *)t->req.vjp_form);
    free((char *)t->req.jvp_form);
    free((char *)t->req.name);
    free((char *)t->req.fuse);
    free((char *)t->req.fma);
    free((char *)t->req.target);
    free((char *)t->req.wrt);
    free((char *)t->req.train);
    free((char *)t->req.optimizer);
    for (int i = 0; t->params && i < t->req.nparams; i++)
        free(t->params[i]);
    free(t->params);
}

/* A copy of req for the background regeneration: NULL strings stay NULL. */
static int copy_request(struct kg_tier *t, const kg_request *req)
{
    int bad = 0;
#define DUP(f) (t->req.f = req->f ? kg_strdup(req->f) : NULL, bad |= req->f && !t->req.f)
    DUP(graph);
    DUP(dtype);
    DUP(semantics);
    DUP(vjp_form);
    DUP(jvp_form);
    DUP(name);
    DUP(fuse);
    DUP(fma);
    DUP(target);
    DUP(wrt);
    DUP(train);
    DUP(optimizer);
#undef DUP
    t->params = calloc((size_t)(req->nparams > 0 ? req->nparams : 1), sizeof *t->params);
    bad |= !t->params;
    t->req.nparams = t->params && req->nparams > 0 ? req->nparams : 0; /* free_request's bound */
    for (int i = 0; !bad && i < t->req.nparams; i++)
        bad |= !(t->params[i] = kg_strdup(req->params[i]));
    t->req.params = (const char *const *)t->params;
    t->req.passes = req->passes;
    t->req.unroll = "none";
    return bad ? -1 : 0;
}

kg_status kg_tier_attach(kg_kernel *k, const kg_request *req, char **err)
{
    if (!req->jit || strcmp(req->jit, "tcc") == 0)
        return KG_OK;
    struct kg_tier *t = calloc(1, sizeof *t);
    if (!t)
        return KG_ENOMEM;
    int mu = pthread_mutex_init(&t->mu, NULL) == 0, cv = mu && pthread_cond_init(&t->cv, NULL) == 0,
        ab = cv && pthread_mutex_init(&t->ab.mu, NULL) == 0;
    t->mode = strcmp(req->jit, "cc") == 0 ? MODE_CC : MODE_AUTO;
    const char *g = req->graph;
    size_t len = strlen(g);
    t->regenerate = t->mode == MODE_AUTO && !req->unroll && !strchr(g, '/') && req->nconsts == 0 &&
                    !(len >= 4 && strcmp(g + len - 4, ".lua") == 0); /* baked tables: not copied */
    k->tier = t; /* kg_tier_release frees what exists */
    if (!ab || (t->regenerate && copy_request(t, req) != 0)) {
        if (ab)
            kg_tier_release(k);
        else { /* the mutexes that were made */
            if (cv)
                pthread_cond_destroy(&t->cv);
            if (mu)
                pthread_mutex_destroy(&t->mu);
            free(t);
            k->tier = NULL;
        }
        *err = kg_strdup("out of memory");
        return KG_ENOMEM;
    }
    return KG_OK;
}

/* The cc entry points become what kg_call runs. */
static void publish(kg_kernel *k, int (*entry[KG_NPASSES])(void *const *))
{
    for (int p = 0; p < KG_NPASSES; p++)
        if (entry[p])
            __atomic_store_n(&k->entry[p], entry[p], __ATOMIC_RELEASE);
    __atomic_store_n(&k->tier->current, TIER_CC, __ATOMIC_RELEASE);
}

/* The note when tcc runs instead of cc. */
static char *fallback_note(const char *why)
{
    return kg_strdupf("cc tier unavailable, running tcc: %s", why ? why : "out of memory");
}

/* Same arguments, shapes and workspace for every pass: a kernel that may replace k's code. */
static int same_interface(const kg_kernel *a, const kg_kernel *b)
{
    if (a->elem_size != b->elem_size)
        return 0;
    for (int p = 0; p < KG_NPASSES; p++) {
        const struct kg_fn *f = &a->fns[p], *g = &b->fns[p];
        if (!f->fn != !g->fn || f->nargs != g->nargs || f->ws != g->ws)
            return 0;
        for (int i = 0; i < f->nargs; i++)
            if (f->args[i].role != g->args[i].role || f->args[i].count != g->args[i].count ||
                f->args[i].ndim != g->args[i].ndim || memcmp(f->args[i].shape, g->args[i].shape, sizeof f->args[i].shape))
                return 0;
    }
    return 1;
}

static void *background(void *arg)
{
    kg_kernel *k = arg, *sibling = NULL;
    struct kg_tier *t = k->tier;
    const char *source = k->text[KG_TEXT_JIT_SOURCE];
    char *note = NULL, *err = NULL;
    kg_status st = KG_OK;
    if (t->regenerate && !__atomic_load_n(&t->ab.cancelled, __ATOMIC_ACQUIRE)) {
        st = kg_generate(&t->req, &sibling, &err);
        if (st == KG_OK && same_interface(k, sibling))
            source = sibling->text[KG_TEXT_JIT_SOURCE];
        if (st != KG_ENOMEM)
            st = KG_OK; /* otherwise: the tcc text, compiled by cc */
        free(err);
    }
    void *dl = NULL;
    int (*entry[KG_NPASSES])(void *const *) = {0};
    if (st == KG_OK)
        st = kg_cc_build(k, source, &t->env, &t->ab, &dl, entry, &note);
    kg_free(sibling);
    pthread_mutex_lock(&t->mu);
    int cancelled = __atomic_load_n(&t->ab.cancelled, __ATOMIC_ACQUIRE);
    if (st == KG_OK && !cancelled) {
        t->dl = dl;
        dl = NULL;
        publish(k, entry);
        t->note = note;
    } else {
        t->note = cancelled ? NULL : fallback_note(note);
        free(note);
    }
    __atomic_store_n(&t->running, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (dl)
        dlclose(dl);
    return NULL;
}

kg_status kg_compile(kg_kernel *k, char **err)
{
    *err = NULL;
    struct kg_tier *t = k->tier;
    if (!t)
        return kg_jit_compile_tcc(k, err);
    if (__atomic_load_n(&t->current, __ATOMIC_ACQUIRE) != TIER_NONE)
        return KG_OK; /* compiled already */
    kg_cc_env_free(&t->env);
    if (kg_cc_env_capture(&t->env) != 0) {
        *err = kg_strdup("out of memory");
        return KG_ENOMEM;
    }
    free(t->note);
    t->note = NULL;
    if (t->mode == MODE_CC) {
        void *dl = NULL;
        int (*entry[KG_NPASSES])(void *const *) = {0};
        char *note = NULL;
        if (kg_cc_build(k, k->text[KG_TEXT_JIT_SOURCE], &t->env, NULL, &dl, entry, &note) == KG_OK) {
            t->dl = dl;
            t->note = note;
            publish(k, entry);
            return KG_OK;
        }
        t->note = fallback_note(note); /* NULL when memory is short: kg_tier says tcc all the same */
        free(note);
    }
    kg_status st = kg_jit_compile_tcc(k, err);
    if (st != KG_OK)
        return st;
    __atomic_store_n(&t->current, TIER_TCC, __ATOMIC_RELEASE);
    if (t->mode == MODE_AUTO) {
        __atomic_store_n(&t->running, 1, __ATOMIC_RELEASE);
        if (pthread_create(&t->thread, NULL, background, k) == 0) {
            t->started = 1;
        } else {
            __atomic_store_n(&t->running, 0, __ATOMIC_RELEASE);
            t->note = fallback_note("cannot start a thread for the background compile");
        }
    }
    return KG_OK;
}

const char *kg_tier(const kg_kernel *k)
{
    if (!k->tier)
        return k->tcc ? "tcc" : "none";
    return TIER_NAMES[__atomic_load_n(&k->tier->current, __ATOMIC_ACQUIRE)];
}

const char *kg_wait(const kg_kernel *k)
{
    struct kg_tier *t = k->tier;
    if (t && t->started) {
        pthread_mutex_lock(&t->mu);
        while (__atomic_load_n(&t->running, __ATOMIC_ACQUIRE))
            pthread_cond_wait(&t->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
    return kg_tier(k);
}

const char *kg_tier_note(const kg_kernel *k)
{
    struct kg_tier *t = k->tier;
    if (!t || __atomic_load_n(&t->running, __ATOMIC_ACQUIRE))
        return NULL;
    return t->note;
}

void kg_tier_release(kg_kernel *k)
{
    struct kg_tier *t = k->tier;
    if (!t)
        return;
    if (t->started) {
        __atomic_store_n(&t->ab.cancelled, 1, __ATOMIC_RELEASE);
        pthread_mutex_lock(&t->ab.mu);
        if (t->ab.child > 0)
            kill(-t->ab.child, SIGTERM); /* the compiler's process group: the driver and cc1, as, ld */
        pthread_mutex_unlock(&t->ab.mu);
        kg_cc_wake();
        pthread_join(t->thread, NULL);
    }
    if (t->dl) {
        for (int p = 0; p < KG_NPASSES; p++) /* no pointer into unloaded code survives */
            k->entry[p] = NULL;
        dlclose(t->dl);
    }
    if (t->regenerate)
        free_request(t);
    kg_cc_env_free(&t->env);
    free(t->note);
    pthread_mutex_destroy(&t->ab.mu);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
    k->tier = NULL;
}
