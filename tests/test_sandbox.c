/* test_sandbox: graph specs are code, loaded in a sandbox. Every spec in tests/specs/bad/ must
 * fail with KG_EINPUT and the message its first line announces ("-- expect: TEXT"): no io, os,
 * load, require, debug, string.dump, metatables or pcall; an endless loop hits the instruction
 * budget and a memory bomb the memory cap; errors name the spec file and line. A bytecode
 * spec is refused. The sandbox leaves no trace (no file written) and the process stays usable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kg_test.h"

#define BAD_DIR "tests/specs/bad"
#define ESCAPE_FILE "/tmp/kerngen_sandbox_escape"

static char *expected_message(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    const char *tag = "-- expect: ";
    if (strncmp(line, tag, strlen(tag)) != 0)
        return NULL;
    line[strcspn(line, "\n")] = 0;
    return strdup(line + strlen(tag));
}

static kg_status generate(const char *graph, char **err)
{
    kg_request req = {0};
    kg_kernel *k = NULL;
    req.graph = graph;
    kg_status st = kg_generate(&req, &k, err);
    kg_free(k);
    return st;
}

static void bad_spec(void **state)
{
    const char *path = *state;
    char *want = expected_message(path);
    assert_non_null(want);
    remove(ESCAPE_FILE);
    char *err = NULL;
    kg_status st = generate(path, &err);
    printf("  %-40s -> %s\n", path, err ? err : "(no error)");
    assert_int_equal(st, KG_EINPUT);
    assert_non_null(err);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, strrchr(path, '/') + 1)); /* names the spec file */
    assert_int_equal(access(ESCAPE_FILE, F_OK), -1);
    free(err);
    free(want);
}

/* A precompiled (bytecode) chunk is refused: specs load as text only. */
static void bytecode_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/kg_bytecode_XXXXXX"; /* a path with '/' is read as a spec file */
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char chunk[] = "\x1bLuaT\x00\x19\x93\r\n\x1a\n\x04\x08\x08";
    assert_int_equal(write(fd, chunk, sizeof chunk - 1), (int)(sizeof chunk - 1));
    close(fd);
    char *err = NULL;
    assert_int_equal(generate(path, &err), KG_EINPUT);
    assert_non_null(strstr(err, "binary chunk"));
    free(err);
    remove(path);
}

/* After hostile specs the library still works (limits are reset per state). */
static void still_usable(void **state)
{
    (void)state;
    const char *params[] = {"rows=2", "dim=3", NULL};
    kg_kernel *k = kgt_build("layernorm", "f64", params);
    assert_non_null(k);
    kg_free(k);
}

int main(void)
{
    const struct CMUnitTest extra[] = {cmocka_unit_test(bytecode_refused), cmocka_unit_test(still_usable)};
    return kgt_run_spec_dir("sandbox", BAD_DIR, bad_spec, extra, 2);
}
