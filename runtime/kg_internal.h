/* Private declarations shared by the runtime's files. */
#ifndef KG_INTERNAL_H
#define KG_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>

#include "kerngen.h"

struct kg_fn {
    char *fn;
    int nargs;
    kg_arg *args;
    size_t ws;
};

struct kg_kernel {
    char *text[KG_TEXT_IR + 1];
    size_t elem_size;
    struct kg_fn fns[KG_NPASSES];
    size_t statements, bytes;
    size_t table_bytes;               /* the baked inputs' static const tables */
    int closed[KG_NPASSES];
    int named;                        /* the request gave the name (else the default name) */
    char **libm;                      /* names of the libm functions the JIT unit declares */
    int nlibm;
    void *tcc;                        /* TCCState *, owned */
    /* What kg_call runs, per pass. Read and written with __atomic builtins (acquire/release):
       the cc tier replaces them while other threads may be calling (kg_tier.c). */
    int (*entry[KG_NPASSES])(void *const *);
    struct kg_tier *tier;             /* kg_request.jit "cc" or "auto": the tier state, owned;
                                         NULL for "tcc" */
};

/* malloc'd printf and strdup; NULL when memory runs out (the library never aborts). */
char *kg_strdupf(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;
char *kg_strdup(const char *s);

/* A heap of size classes in 2 MB chunks (kg_heap.c), for one thread at a time (a Lua state's):
   blocks of 1 to KG_HEAP_BLOCK_MAX bytes; freeing gives a block's size back. Zeroed and cap
   set: empty. kg_heap_alloc takes no chunk beyond cap bytes of them (it sets capped then). */
enum { KG_HEAP_BLOCK_MAX = 128 << 10, KG_HEAP_CLASSES = 52, KG_HEAP_CHUNK = 2 << 20 };
typedef struct {
    void *free[KG_HEAP_CLASSES]; /* per class: freed blocks, linked through their first word */
    char *bump, *end;            /* the newest chunk's unused part */
    struct kg_chunk *chunks;
    size_t bytes;                /* in chunks */
    size_t cap;                  /* bound for bytes */
    int capped;                  /* an allocation failed for want of a chunk beyond cap */
} kg_heap;
void *kg_heap_alloc(kg_heap *h, size_t n); /* NULL when memory runs out or cap is reached */
void kg_heap_free(kg_heap *h, void *p, size_t n);
int kg_heap_same_block(size_t a, size_t b); /* blocks of a and b bytes are of one class */
void kg_heap_release(kg_heap *h); /* every chunk back; the heap is zeroed */

/* Lua sources, spec files and templates compiled into the binary (build/kg_embedded.c,
   made by gen/embed.c); KERNGEN_LUA_DIR=<repo> loads them from disk instead. */
typedef struct {
    const char *path;
    const char *text;
    size_t len;
} kg_embedded_file;
extern const kg_embedded_file kg_embedded[];
extern const size_t kg_embedded_count;
/* The built-in graphs by name, each with the file of graphs/ that defines it (gen/embed.c). */
typedef struct {
    const char *name;
    const char *path;
} kg_graph_file;
extern const kg_graph_file kg_graph_index[];
extern const size_t kg_graph_index_count;

/* Releases the compiled code (kg_jit.c); first the cc tier (kg_tier_release). */
void kg_jit_release(kg_kernel *k);

/* libtcc: compiles k's JIT unit in memory and sets k->entry (kg_jit.c). */
kg_status kg_jit_compile_tcc(kg_kernel *k, char **err);

/* The math functions as array functions for the JIT's machine code, compiled for AVX2 and FMA
   (build/kg_vm_*.c, made by gen/mathlib.lua): without and with the fma option; none off x86-64. */
typedef struct {
    const char *name;
    void (*fn)(void);
} kg_vm_fn;
extern const kg_vm_fn kg_vm_plain[], kg_vm_fma[];
extern const size_t kg_vm_plain_count, kg_vm_fma_count;

/* ---- tiers (kg_tier.c) ---- */

/* Checks req->jit and gives the request to generate: for "cc" the unroll default is "none"
   (loops, which gcc vectorizes) instead of "auto". KG_EINPUT for an unknown tier. */
kg_status kg_tier_prepare(const kg_request *req, kg_request *gen, char **err);
/* After generation: keeps the tier choice (and, for "auto", what regenerating needs). */
kg_status kg_tier_attach(kg_kernel *k, const kg_request *req, char **err);
/* Stops and joins a background compile, unloads the cc code; k->tier is NULL afterwards. */
void kg_tier_release(kg_kernel *k);

/* ---- the cc tier's compiler and cache (kg_cc.c) ---- */

/* What a compile reads from the environment, captured in the thread that calls kg_compile. */
typedef struct {
    char *cc;        /* $CC, default "cc": words separated by blanks (no shell) */
    char *dir;       /* the cache directory; NULL when none can be named (why: dir_problem) */
    char *parent;    /* its parent, created 0700 when missing ($XDG_CACHE_HOME, ~/.cache); or NULL */
    char *dir_problem;
    char *max;       /* $KERNGEN_CACHE_MAX or NULL */
    char *path;      /* $PATH or NULL, where the compiler is looked for */
} kg_cc_env;

/* Fills env from the environment; -1 when memory runs out (env is then empty). */
int kg_cc_env_capture(kg_cc_env *env);
void kg_cc_env_free(kg_cc_env *env);

/* Cancellation of a background compile: kg_tier_release sets `cancelled` and signals the
   compiler's process group (`child`, under mu) so that kg_cc_build returns soon. */
typedef struct {
    pthread_mutex_t mu;
    pid_t child;        /* the running compiler (also its process group), else 0; under mu */
    int cancelled;      /* __atomic */
} kg_cc_abort;

/* The cc tier of one JIT unit: loads <cache>/<key>.so, or compiles source with the system C
   compiler, caches and loads it. On KG_OK *dl and entry[p] for every pass k generated are set
   and *note (malloc'd, may be NULL) says how (cache hit, or compiled); otherwise *note says why
   not, for the caller's fallback to tcc. ab may be NULL (no cancellation). */
kg_status kg_cc_build(const kg_kernel *k, const char *source, const kg_cc_env *env, kg_cc_abort *ab,
                      void **dl, int (*entry[KG_NPASSES])(void *const *), char **note);

/* Wakes compiles waiting for a compiler slot (after setting an abort's `cancelled`). */
void kg_cc_wake(void);

/* SHA-256 of data (kg_cc.c; exported for tests/test_tier.c). */
void kg__sha256(const void *data, size_t len, unsigned char digest[32]);

#endif
