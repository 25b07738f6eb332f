/* Private declarations shared by the runtime's files. */
#ifndef KG_INTERNAL_H
#define KG_INTERNAL_H

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
    int (*entry[KG_NPASSES])(void *const *);
};

/* malloc'd printf and strdup; NULL when memory runs out (the library never aborts). */
char *kg_strdupf(const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 1, 2)))
#endif
    ;
char *kg_strdup(const char *s);

/* Lua sources, spec files and templates compiled into the binary (build/kg_embedded.c,
   made by gen/embed.c); KERNGEN_LUA_DIR=<repo> loads them from disk instead. */
typedef struct {
    const char *path;
    const char *text;
    size_t len;
} kg_embedded_file;
extern const kg_embedded_file kg_embedded[];
extern const size_t kg_embedded_count;

/* Releases the compiled code (kg_jit.c). */
void kg_jit_release(kg_kernel *k);

#endif
