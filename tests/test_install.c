/*
 * test_install.c - build.sh's interface, `./build.sh install`, and projects built against an
 * installed tree, as a user or packager would use them.
 *
 *   usage_without_work      --help, -h and help print the usage and exit 0; an unknown mode,
 *                           two modes or a relative PREFIX exit 2 with a message; none of them
 *                           builds (CC=false would fail it) or installs anything.
 *   install_staged          `install DESTDIR=... PREFIX=/usr LIBDIR=/usr/lib/<other>` reuses the
 *                           build (libkerngen.a untouched, "up to date") and stages exactly the
 *                           expected files; no installed file names DESTDIR; kerngen.pc says
 *                           prefix=/usr; the library exports only kg_* symbols; the headers are
 *                           the repository's.
 *   cmake_consumer          examples/cmake (find_package(kerngen), kerngen_add_kernel for an f32
 *                           and an f64 kernel, a C++17 main including both generated headers and
 *                           kerngen.h, -Wall -Wextra -Wpedantic -Werror) configures against the
 *                           installed PREFIX, builds and runs (JIT and AOT agree). A rebuild with
 *                           nothing changed regenerates nothing; a changed request regenerates
 *                           that kernel only; a newer kerngen regenerates both. The same project
 *                           builds with Ninja against a DESTDIR-staged tree with another libdir
 *                           (the package finds its files from its own location), runs, and
 *                           regenerates on a changed request there too.
 *   cmake_spec_file         kerngen_add_kernel with a spec file of the project's own (relative
 *                           path, default name from the file name) builds and runs, and a
 *                           changed spec regenerates; a misspelt keyword fails at configure time.
 *   cmake_passes            PASSES forward vjp gives a header without the JVP; skipped, saying
 *                           so, while `kerngen emit` has no --pass.
 *   pkgconfig_make_consumer `pkg-config --cflags --libs kerngen` names the installed tree;
 *                           examples/make (the README's Makefile rule and pkg-config) builds
 *                           and runs; a changed request in the Makefile regenerates the kernel.
 *
 * The group setup runs `./build.sh install PREFIX=<tmp>/prefix`, which builds only when the
 * build is out of date (under ./build.sh asan: the plain build/ once). Commands run through
 * /bin/sh in the repository root with their output in a log that a failure prints. Everything
 * lives in one mkdtemp() directory that the group teardown removes.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kg_aot.h" /* xprintf, slurp */

static char g_dir[64];        /* mkdtemp() directory */
static char g_root[PATH_MAX]; /* repository root (KERNGEN_ROOT or the working directory) */

/* The output of the last command (g_dir/log), NUL-terminated; the caller frees. */
static char *last_log(void)
{
    char *path = xprintf("%s/log", g_dir), *text = slurp(path, NULL);
    free(path);
    assert_non_null(text);
    return text;
}

/* Runs the command (printf-style) with sh in the repository root, stdout and stderr into
   g_dir/log; fails the test, showing the command and its output, unless it exits with
   `expect`. */
#ifdef __GNUC__
__attribute__((format(printf, 2, 3)))
#endif
static void sh(int expect, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char cmd[8192];
    int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(len > 0 && (size_t)len < sizeof cmd);
    char *full = xprintf("cd '%s' && { %s ; } > '%s/log' 2>&1 < /dev/null", g_root, cmd, g_dir);
    int st = system(full);
    free(full);
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc != expect) {
        char *log = last_log(); /* printed here: cmocka shortens long messages */
        fprintf(stderr, "$ %s\nexit %d, expected %d; output:\n%s\n", cmd, rc, expect, log);
        free(log);
        fail_msg("exit %d, expected %d", rc, expect);
    }
}

/* Fails the test unless the last command's output contains (or, with want 0, lacks) text. */
static void log_has(int want, const char *text)
{
    char *log = last_log();
    int has = strstr(log, text) != NULL;
    if (has != want) {
        fprintf(stderr, "the output %s \"%s\":\n%s\n", want ? "lacks" : "has", text, log);
        free(log);
        fail_msg("the output %s \"%s\"", want ? "lacks" : "has", text);
    }
    free(log);
}

static int group_setup(void **state)
{
    (void)state;
    const char *root = getenv("KERNGEN_ROOT");
    if (!realpath(root && *root ? root : ".", g_root)) {
        perror("test_install: repository root");
        return -1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/kg_install_XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    char *cmd = xprintf("cd '%s' && ./build.sh install PREFIX='%s/prefix' > '%s/setup.log' 2>&1 < /dev/null", g_root,
                        g_dir, g_dir);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        fprintf(stderr, "test_install: ./build.sh install failed; see %s/setup.log\n", g_dir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = xprintf("rm -rf '%s'", g_dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static void usage_without_work(void **state)
{
    (void)state;
    const char *help[] = {"--help", "-h", "help"};
    for (int i = 0; i < 3; i++) {
        sh(0, "CC=false ./build.sh %s PREFIX='%s/never'", help[i], g_dir);
        log_has(1, "usage: ./build.sh [MODE] [NAME=VALUE...]");
        log_has(1, "install ");
    }
    sh(2, "CC=false ./build.sh frobnicate PREFIX='%s/never'", g_dir);
    log_has(1, "unknown mode or argument 'frobnicate'");
    log_has(1, "usage: ./build.sh");
    sh(2, "CC=false ./build.sh test install");
    log_has(1, "two modes");
    sh(2, "CC=false ./build.sh install PREFIX=relative/dir");
    log_has(1, "PREFIX=relative/dir: must be an absolute path");
    sh(2, "CC=false ./build.sh install FROB=1");
    log_has(1, "unknown mode or argument 'FROB=1'");
    sh(1, "test -e '%s/never'", g_dir); /* nothing installed */
}

static void install_staged(void **state)
{
    (void)state;
    const char *stage = "stage", *libdir = "/usr/lib/kg-multiarch";
    struct stat before, after;
    assert_int_equal(stat("build/libkerngen.a", &before), 0);
    sh(0, "./build.sh install DESTDIR='%s/%s' PREFIX=/usr LIBDIR=%s", g_dir, stage, libdir);
    log_has(1, "build is up to date");
    assert_int_equal(stat("build/libkerngen.a", &after), 0);
    assert_true(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec);

    sh(0, "cd '%s/%s' && find . ! -type d | LC_ALL=C sort", g_dir, stage);
    char *log = last_log();
    char *want = xprintf("./usr/bin/kerngen\n./usr/include/kerngen.h\n./usr/include/kg_check.h\n"
                         ".%s/cmake/kerngen/kerngen-config-version.cmake\n.%s/cmake/kerngen/kerngen-config.cmake\n"
                         ".%s/libkerngen.a\n.%s/pkgconfig/kerngen.pc\n",
                         libdir, libdir, libdir, libdir);
    if (strcmp(log, want) != 0) {
        fprintf(stderr, "staged files:\n%sexpected:\n%s", log, want);
        fail_msg("the staged files differ");
    }
    free(log);
    free(want);
    sh(0, "test -x '%s/%s/usr/bin/kerngen' && '%s/%s/usr/bin/kerngen' --version", g_dir, stage, g_dir, stage);
    log_has(1, KG_VERSION);
    /* DESTDIR is a staging root: no installed file may name it */
    sh(1, "grep -rl '%s' '%s/%s'", g_dir, g_dir, stage);
    sh(0, "cat '%s/%s%s/pkgconfig/kerngen.pc'", g_dir, stage, libdir);
    log_has(1, "\nprefix=/usr\n");
    log_has(1, "\nlibdir=${prefix}/lib/kg-multiarch\n");
    log_has(1, "\nVersion: " KG_VERSION "\n");
    sh(0, "cmp runtime/kerngen.h '%s/%s/usr/include/kerngen.h' && cmp runtime/kg_check.h '%s/%s/usr/include/kg_check.h'",
       g_dir, stage, g_dir, stage);
    /* libtcc's globals (tok, file, expect, ...) stay inside the library */
    sh(0, "nm -g --defined-only '%s/%s%s/libkerngen.a' | awk 'NF == 3 { print $3 }' > '%s/exported' && "
          "grep -c '^kg_' '%s/exported' && ! grep -v '^kg_' '%s/exported'",
       g_dir, stage, libdir, g_dir, g_dir, g_dir);
}

static void cmake_consumer(void **state)
{
    (void)state;
    const char *strict = "-Wall -Wextra -Wpedantic -Werror";
    sh(0, "rm -rf '%s/cm-src' && cp -r examples/cmake '%s/cm-src'", g_dir, g_dir);
    sh(0, "cmake -S '%s/cm-src' -B '%s/cm' -DCMAKE_PREFIX_PATH='%s/prefix' -DCMAKE_C_FLAGS='%s' -DCMAKE_CXX_FLAGS='%s'",
       g_dir, g_dir, g_dir, strict, strict);
    sh(0, "cmake --build '%s/cm' && '%s/cm/app'", g_dir, g_dir);
    log_has(1, "generating ln.h and ln.c");
    log_has(1, "generating rmsnorm_4x8_f64.h and rmsnorm_4x8_f64.c");
    log_has(1, "app: layernorm rows=4 dim=8:");
    log_has(1, "JIT and AOT differ in 0 of 32");

    /* nothing changed: nothing regenerated */
    sh(0, "cmake --build '%s/cm'", g_dir);
    log_has(0, "generating");
    /* a changed request regenerates that kernel, and only that one */
    sh(0, "sed -i 's/layernorm rows=4 dim=8/layernorm rows=6 dim=8/' '%s/cm-src/CMakeLists.txt' && "
          "cmake --build '%s/cm' && '%s/cm/app'",
       g_dir, g_dir, g_dir);
    log_has(1, "generating ln.h and ln.c");
    log_has(0, "generating rmsnorm");
    log_has(1, "app: layernorm rows=6 dim=8:");
    log_has(1, "JIT and AOT differ in 0 of 48");
    /* a newer kerngen regenerates every kernel */
    sh(0, "touch '%s/prefix/bin/kerngen' && cmake --build '%s/cm'", g_dir, g_dir);
    log_has(1, "generating ln.h and ln.c");
    log_has(1, "generating rmsnorm_4x8_f64.h and rmsnorm_4x8_f64.c");

    /* Ninja, against a staged tree with another libdir (the package finds its files from where
       it is): builds, runs, and a changed request regenerates that kernel only */
    sh(0, "./build.sh install DESTDIR='%s/moved' PREFIX=/opt/kerngen LIBDIR=/opt/kerngen/lib/x/y", g_dir);
    sh(0, "cmake -G Ninja -S '%s/cm-src' -B '%s/cm-moved' -Dkerngen_DIR='%s/moved/opt/kerngen/lib/x/y/cmake/kerngen' "
          "-DCMAKE_C_FLAGS='%s' -DCMAKE_CXX_FLAGS='%s' && cmake --build '%s/cm-moved' && '%s/cm-moved/app'",
       g_dir, g_dir, g_dir, strict, strict, g_dir, g_dir);
    log_has(1, "JIT and AOT differ in 0 of 48");
    sh(0, "sed -i 's/layernorm rows=6 dim=8/layernorm rows=5 dim=8/' '%s/cm-src/CMakeLists.txt' && "
          "cmake --build '%s/cm-moved' && '%s/cm-moved/app'",
       g_dir, g_dir, g_dir);
    log_has(1, "generating ln.h and ln.c");
    log_has(0, "generating rmsnorm");
    log_has(1, "JIT and AOT differ in 0 of 40");

}

/* A project of its own in g_dir/<name>: the CMakeLists.txt lines given, and main.c. */
static void write_project(const char *name, const char *cmakelists, const char *main_c)
{
    sh(0, "mkdir -p '%s/%s' && cd '%s/%s' && printf '%%s\\n' %s > CMakeLists.txt && printf '%%s\\n' %s > main.c",
       g_dir, name, g_dir, name, cmakelists, main_c);
}

static void cmake_spec_file(void **state)
{
    (void)state;
    /* a spec file of the project's own: found relative to the source directory, named after
       the file, regenerated when it changes */
    write_project("cm-spec",
                  "'cmake_minimum_required(VERSION 3.16)' 'project(spec LANGUAGES C)' "
                  "'find_package(kerngen REQUIRED)' 'add_executable(spec main.c)' "
                  "'kerngen_add_kernel(spec specs/square.lua n=3 DTYPE f64)'",
                  "'#include <stdio.h>' '#include \"square_3_f64.h\"' "
                  "'int main(void) { double x[3] = {1, 2, 3}, y[SQUARE_3_F64_Y_SIZE]; "
                  "int rc = square_3_f64_forward(x, y, NULL); printf(\"y = %g %g %g\\n\", y[0], y[1], y[2]); "
                  "return rc; }'");
    sh(0, "mkdir -p '%s/cm-spec/specs' && printf '%%s\\n' 'return {' '  name = \"square\",' "
          "'  summary = \"y = x * x\",' '  dims = { { \"n\", 4 } },' '  inputs = { { \"x\", \"n\" } },' "
          "'  outputs = { \"y\" },' '  forward = function(g, v) v.y = v.x * v.x end,' '}' "
          "> '%s/cm-spec/specs/square.lua'",
       g_dir, g_dir);
    sh(0, "cmake -S '%s/cm-spec' -B '%s/cm-spec/build' -DCMAKE_PREFIX_PATH='%s/prefix' "
          "-DCMAKE_C_FLAGS='-Wall -Wextra -Wpedantic -Werror' && cmake --build '%s/cm-spec/build' && "
          "'%s/cm-spec/build/spec'",
       g_dir, g_dir, g_dir, g_dir, g_dir);
    log_has(1, "generating square_3_f64.h and square_3_f64.c");
    log_has(1, "y = 1 4 9");
    sh(0, "touch '%s/cm-spec/specs/square.lua' && cmake --build '%s/cm-spec/build'", g_dir, g_dir);
    log_has(1, "generating square_3_f64.h and square_3_f64.c");

    /* a misspelt keyword is a configure-time error naming it */
    write_project("cm-bad",
                  "'cmake_minimum_required(VERSION 3.16)' 'project(bad LANGUAGES C)' "
                  "'find_package(kerngen REQUIRED)' 'add_executable(bad main.c)' "
                  "'kerngen_add_kernel(bad layernorm rows=2 dim=4 DTYPES f64)'",
                  "'int main(void) { return 0; }'");
    sh(1, "cmake -S '%s/cm-bad' -B '%s/cm-bad/build' -DCMAKE_PREFIX_PATH='%s/prefix'", g_dir, g_dir, g_dir);
    log_has(1, "kerngen_add_kernel: 'DTYPES' is neither NAME=VALUE nor a keyword");
}

/* PASSES needs `kerngen emit --pass`: skipped, visibly, while emit has none */
static void cmake_passes(void **state)
{
    (void)state;
    sh(0, "'%s/prefix/bin/kerngen' emit --help", g_dir);
    char *help = last_log();
    int has_pass = strstr(help, "--pass") != NULL;
    free(help);
    if (!has_pass) {
        print_message("cmake_passes: skipped: kerngen emit has no --pass yet\n");
        skip();
    }
    write_project("cm-passes",
                  "'cmake_minimum_required(VERSION 3.16)' 'project(passes LANGUAGES C)' "
                  "'find_package(kerngen REQUIRED)' 'add_executable(passes main.c)' "
                  "'kerngen_add_kernel(passes layernorm rows=2 dim=4 PASSES forward vjp NAME lnfv)'",
                  "'#include \"lnfv.h\"' 'static float b[7][8], ws[LNFV_VJP_WS_SIZE + LNFV_FORWARD_WS_SIZE + 1];' "
                  "'int main(void) { b[1][0] = b[1][1] = b[0][1] = 1; return lnfv_forward(b[0], b[1], b[2], b[3], ws) | "
                  "lnfv_vjp(b[0], b[1], b[2], b[3], b[4], b[5], b[6], ws); }'");
    sh(0, "cmake -S '%s/cm-passes' -B '%s/cm-passes/build' -DCMAKE_PREFIX_PATH='%s/prefix' && "
          "cmake --build '%s/cm-passes/build' && '%s/cm-passes/build/passes' && "
          "! grep -n lnfv_jvp '%s/cm-passes/build/kerngen/passes/lnfv.h'",
       g_dir, g_dir, g_dir, g_dir, g_dir, g_dir);
}

static void pkgconfig_make_consumer(void **state)
{
    (void)state;
    char *pc = xprintf("PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig'", g_dir);
    sh(0, "%s pkg-config --cflags --libs kerngen", pc);
    char *want = xprintf("-I%s/prefix/include", g_dir);
    log_has(1, want);
    free(want);
    want = xprintf("-L%s/prefix/lib -lkerngen", g_dir);
    log_has(1, want);
    free(want);
    log_has(1, "-llua5.4");
    sh(0, "%s pkg-config --modversion kerngen && %s pkg-config --exists 'kerngen >= 0.1'", pc, pc);
    log_has(1, KG_VERSION);

    const char *make = "make KERNGEN=\"$d/prefix/bin/kerngen\" CFLAGS='-O2 -Wall -Wextra -Wpedantic -Werror'";
    sh(0, "d='%s' && rm -rf \"$d/mk\" && cp -r examples/make \"$d/mk\" && cd \"$d/mk\" && %s %s && ./app", g_dir, pc,
       make);
    log_has(1, "emit layernorm rows=4 dim=8 --dtype f32 --name ln --out gen");
    log_has(1, "JIT and AOT differ in 0 of 32");
    sh(0, "d='%s' && cd \"$d/mk\" && %s %s", g_dir, pc, make);
    log_has(1, "'app' is up to date");
    sh(0, "d='%s' && cd \"$d/mk\" && sed -i 's/rows=4 dim=8/rows=2 dim=8/' Makefile && %s %s && ./app", g_dir, pc,
       make);
    log_has(1, "emit layernorm rows=2 dim=8");
    log_has(1, "JIT and AOT differ in 0 of 16");
    free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(usage_without_work),
        cmocka_unit_test(install_staged),
        cmocka_unit_test(cmake_consumer),
        cmocka_unit_test(cmake_spec_file),
        cmocka_unit_test(cmake_passes),
        cmocka_unit_test(pkgconfig_make_consumer),
    };
    return cmocka_run_group_tests_name("test_install", tests, group_setup, group_teardown);
}
