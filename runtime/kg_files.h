/* kg_files: publish a set of files in one directory, all or nothing as far as POSIX allows.
 *  - Each file is first written to a new temporary file in the directory, created with
 *    O_CREAT|O_EXCL|O_NOFOLLOW under an unpredictable name, so a planted file or symlink is
 *    never opened, followed or overwritten.
 *  - Every destination is checked (absent or a regular file) before the first rename, so a
 *    blocked path (a directory in the way) leaves no new file behind.
 *  - The renames happen under an exclusive flock on the directory, so concurrent publishers
 *    (threads or processes) into one directory never leave a mix of their sets. */
#ifndef KG_FILES_H
#define KG_FILES_H

#include <stdio.h>

/* Writes one file's bytes to f; returns 0, or -1 with a malloc'd message in *err (or errno
   set and *err NULL). */
typedef int (*kg_file_writer)(FILE *f, const void *ctx, const char *path, char **err);

typedef struct {
    const char *name;     /* file name within the directory */
    kg_file_writer write;
    const void *ctx;
} kg_file;

/* Publishes files[0..n) in dir. Returns 0, or -1 and *err (malloc'd, names the path; NULL on
   out-of-memory) with no file of the set published and no temporary left behind. */
int kg_files_publish(const char *dir, const kg_file *files, int n, char **err);

/* A writer for a NUL-terminated text (ctx). */
int kg_file_text(FILE *f, const void *ctx, const char *path, char **err);

#endif
