/* kg_files: see kg_files.h. */
#define _GNU_SOURCE /* getrandom */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kg_files.h"
#include "kg_internal.h"

int kg_file_text(FILE *f, const void *ctx, const char *path, char **err)
{
    (void)path;
    (void)err;
    size_t n = strlen(ctx);
    return fwrite(ctx, 1, n, f) == n ? 0 : -1;
}

/* A new file dir/.name.<16 random hex digits>, opened for writing; NULL on failure. */
static FILE *create_temp(const char *dir, const char *name, char **tmp_path)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&r ^ (uint64_t)attempt; /* still O_EXCL */
        char *path = kg_strdupf("%s/.%s.%016llx", dir, name, (unsigned long long)r);
        if (!path)
            return NULL;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0) {
            FILE *f = fdopen(fd, "wb");
            if (!f) {
                close(fd);
                unlink(path);
                free(path);
                return NULL;
            }
            *tmp_path = path;
            return f;
        }
        free(path);
        if (errno != EEXIST)
            return NULL;
    }
    return NULL;
}

static void set_error(char **err, const char *path, const char *what, int e)
{
    if (!*err)
        *err = kg_strdupf("%s: %s: %s", path, what, strerror(e));
}

int kg_files_publish(const char *dir, const kg_file *files, int n, char **err)
{
    *err = NULL;
    char **tmp = calloc((size_t)n + 1, sizeof *tmp), **final = calloc((size_t)n + 1, sizeof *final);
    int ok = tmp && final, made = 0, dfd = -1;
    for (int i = 0; ok && i < n; i++) {
        final[i] = kg_strdupf("%s/%s", dir, files[i].name);
        FILE *f = final[i] ? create_temp(dir, files[i].name, &tmp[i]) : NULL;
        if (!f) {
            ok = 0;
            if (final[i])
                set_error(err, final[i], "cannot create a temporary file", errno);
            break;
        }
        made = i + 1;
        errno = 0;
        int bad = files[i].write(f, files[i].ctx, final[i], err) != 0;
        int e = errno;
        if (fclose(f) != 0 && !bad) {
            bad = 1;
            e = errno;
        }
        if (bad) {
            ok = 0;
            set_error(err, final[i], "write failed", e ? e : EIO);
        }
    }
    if (ok) { /* the renames of one set happen under the directory's lock */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || flock(dfd, LOCK_EX) != 0) {
            ok = 0;
            set_error(err, dir, "cannot lock the directory", errno);
        }
    }
    for (int i = 0; ok && i < n; i++) { /* a rename onto a directory or a non-file would fail midway */
        struct stat sb;
        if (lstat(final[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            if (!(*err = kg_strdupf("%s: exists and is not a regular file", final[i])))
                errno = ENOMEM;
            ok = 0;
        }
    }
    int renamed = 0;
    for (; ok && renamed < n; renamed++)
        if (rename(tmp[renamed], final[renamed]) != 0) {
            set_error(err, final[renamed], "cannot rename into place", errno);
            ok = 0;
            break;
        }
    if (dfd >= 0)
        close(dfd); /* releases the lock */
    for (int i = renamed; i < made; i++)
        unlink(tmp[i]);
    for (int i = 0; tmp && final && i < n; i++) {
        free(tmp[i]);
        free(final[i]);
    }
    free(tmp);
    free(final);
    return ok ? 0 : -1;
}
