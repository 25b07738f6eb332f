/* kg_kernel: accessors of a generated kernel, AOT file output and release. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kg_files.h"
#include "kg_internal.h"

static const char *const PASS_NAMES[KG_NPASSES] = {"forward", "vjp", "jvp", "forward_train", "vjp_saved", "train"};

int kg_role_reads(kg_role role) { return role < KG_ROLE_OUTPUT || role >= KG_ROLE_PARAM; }
int kg_role_writes(kg_role role) { return role >= KG_ROLE_OUTPUT; }

const char *kg_pass_name(kg_pass pass) { return (unsigned)pass < KG_NPASSES ? PASS_NAMES[pass] : NULL; }

int kg_pass_from_name(const char *name)
{
    for (int p = 0; name && p < KG_NPASSES; p++)
        if (strcmp(PASS_NAMES[p], name) == 0)
            return p;
    return -1;
}

int kg_has_pass(const kg_kernel *k, kg_pass pass) { return (unsigned)pass < KG_NPASSES && k->fns[pass].fn; }

int kg_nargs(const kg_kernel *k, kg_pass pass) { return (unsigned)pass < KG_NPASSES ? k->fns[pass].nargs : 0; }

int kg_arg_index(const kg_kernel *k, kg_pass pass, const char *name)
{
    if ((unsigned)pass >= KG_NPASSES || !k->fns[pass].fn || !name)
        return -1;
    const struct kg_fn *f = &k->fns[pass];
    if (strcmp(name, "ws") == 0)
        return f->nargs;
    for (int i = 0; i < f->nargs; i++)
        if (strcmp(f->args[i].file, name) == 0 || strcmp(f->args[i].cname, name) == 0)
            return i;
    return -1;
}

const kg_arg *kg_arg_at(const kg_kernel *k, kg_pass pass, int i)
{
    if ((unsigned)pass >= KG_NPASSES || i < 0 || i >= k->fns[pass].nargs)
        return NULL;
    return &k->fns[pass].args[i];
}

size_t kg_ws_size(const kg_kernel *k, kg_pass pass) { return (unsigned)pass < KG_NPASSES ? k->fns[pass].ws : 0; }
size_t kg_elem_size(const kg_kernel *k) { return k->elem_size; }
int kg_has_closed_form(const kg_kernel *k, kg_pass pass) { return (unsigned)pass < KG_NPASSES && k->closed[pass]; }
const char *kg_text(const kg_kernel *k, kg_text_kind which) { return k->text[which]; }

size_t kg_table_bytes(const kg_kernel *k) { return k->table_bytes; }

void kg_stats(const kg_kernel *k, size_t *statements, size_t *bytes)
{
    if (statements)
        *statements = k->statements;
    if (bytes)
        *bytes = k->bytes;
}

/* The lines of a banner that say what a kernel file computes: from " * graph:" to the
   " * options:" line (not " * code:", which only says how). */
static size_t request_lines(const char *text)
{
    const char *end = strstr(text, "\n * code:");
    return end ? (size_t)(end - text) : 0;
}

/* A default-named header already in dir made for another request (or not by kerngen): 1.
   Only a regular file is read: a planted link is not followed and a FIFO does not block (the
   publishing step refuses both, with its own message). */
static int holds_another_request(const kg_kernel *k, const char *dir)
{
    char *path = kg_strdupf("%s/%s", dir, k->text[KG_TEXT_HEADER_FILE]);
    int fd = path ? open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
    free(path);
    struct stat sb;
    if (fd < 0)
        return 0;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 0;
    }
    char old[4096];
    ssize_t got = read(fd, old, sizeof old - 1);
    close(fd);
    size_t n = got > 0 ? (size_t)got : 0;
    old[n] = 0;
    size_t mine = request_lines(k->text[KG_TEXT_HEADER]), theirs = request_lines(old);
    return mine != theirs || strncmp(old, k->text[KG_TEXT_HEADER], mine) != 0;
}

kg_status kg_write_files(const kg_kernel *k, const char *dir, char **err)
{
    *err = NULL;
    if (!k->named && holds_another_request(k, dir)) {
        *err = kg_strdupf("%s/%s: exists and was generated for another request (graph, params or options differ); "
                          "choose a --name, or remove the old files", dir, k->text[KG_TEXT_HEADER_FILE]);
        return *err ? KG_EINPUT : KG_ENOMEM;
    }

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
