/* kg_kernel: accessors of a generated kernel, AOT file output and release. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kg_files.h"
#include "kg_internal.h"

static const char *const PASS_NAMES[KG_NPASSES] = {"forward", "vjp", "jvp", "forward_train", "vjp_saved"};

const char *kg_pass_name(kg_pass pass) { return (unsigned)pass < KG_NPASSES ? PASS_NAMES[pass] : NULL; }

int kg_pass_from_name(const char *name)
{
    for (int p = 0; name && p < KG_NPASSES; p++)
        if (strcmp(PASS_NAMES[p], name) == 0)
            return p;
    return -1;
}

int kg_has_pass(const kg_kernel *k, kg_pass pass) { return (unsigned)pass < KG_NPASSES && k->fns[pass].fn; }

int kg_nargs(const kg_kernel *k, kg_pass pass) { return k->fns[pass].nargs; }

const kg_arg *kg_arg_at(const kg_kernel *k, kg_pass pass, int i)
{
    if (i < 0 || i >= k->fns[pass].nargs)
        return NULL;
    return &k->fns[pass].args[i];
}

size_t kg_ws_size(const kg_kernel *k, kg_pass pass) { return k->fns[pass].ws; }
size_t kg_elem_size(const kg_kernel *k) { return k->elem_size; }
int kg_has_closed_form(const kg_kernel *k, kg_pass pass) { return k->closed[pass]; }
const char *kg_text(const kg_kernel *k, kg_text_kind which) { return k->text[which]; }

void kg_stats(const kg_kernel *k, size_t *statements, size_t *bytes)
{
    if (statements)
        *statements = k->statements;
    if (bytes)
        *bytes = k->bytes;
}

kg_status kg_write_files(const kg_kernel *k, const char *dir, char **err)
{
    *err = NULL;

    kg_file files[2] = {{k->text[KG_TEXT_HEADER_FILE], kg_file_text, k->text[KG_TEXT_HEADER]},
                        {k->text[KG_TEXT_SOURCE_FILE], kg_file_text, k->text[KG_TEXT_SOURCE]}};
    if (kg_files_publish(dir, files, 2, err) != 0)
        return *err ? KG_EINPUT : KG_ENOMEM;
    return KG_OK;
}

void kg_free(kg_kernel *k)
{
    if (!k)
        return;
    kg_jit_release(k);
    for (int i = 0; i <= KG_TEXT_IR; i++)
        free(k->text[i]);
    for (int p = 0; p < KG_NPASSES; p++) {
        struct kg_fn *f = &k->fns[p];
        for (int i = 0; i < f->nargs; i++) {
            free((char *)f->args[i].cname);
            free((char *)f->args[i].name);
            free((char *)f->args[i].file);
            free((char *)f->args[i].init);
        }
        free(f->args);
        free(f->fn);
    }
    for (int i = 0; i < k->nlibm; i++)
        free(k->libm[i]);
    free(k->libm);
    free(k);
}
