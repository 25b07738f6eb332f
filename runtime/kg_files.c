/* kg_files: see kg_files.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kg_files.h"
#include "kg_internal.h"

int kg_files_commit(char *const *tmp, char *const *final, int n, char **err)
{
    int i = 0, ok = 1;
    for (; ok && i < n; i++) { /* a rename onto a directory or a non-file would fail midway */
        struct stat sb;
        if (lstat(final[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            *err = kg_strdupf("%s: exists and is not a regular file", final[i]);
            ok = 0;
        }
    }
    for (i = 0; ok && i < n; i++)
        if (rename(tmp[i], final[i]) != 0) {
            *err = kg_strdupf("%s: cannot rename into place: %s", final[i], strerror(errno));
            ok = 0;
        }
    for (int j = ok ? n : i; j < n; j++)
        remove(tmp[j]);
    return ok ? 0 : -1;
}
