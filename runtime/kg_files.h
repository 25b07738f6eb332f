/* kg_files: publish a group of files written to temporary paths, all or nothing as far as
 * POSIX allows: every destination is checked before the first rename, so a blocked path
 * (a directory in the way, a missing folder) leaves no new file behind. */
#ifndef KG_FILES_H
#define KG_FILES_H

/* Renames tmp[i] to final[i] for i < n. On failure removes every tmp file, returns -1 and sets
   *err (malloc'd, names the path). */
int kg_files_commit(char *const *tmp, char *const *final, int n, char **err);

#endif
