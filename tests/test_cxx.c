/*
 * test_cxx.c - C++ uses kerngen's headers unchanged.
 *
 *   every_graph_from_cxx   For every graph kg_graphs() lists, in f32 and f64, the emitted files
 *                          (kg_write_files at emit's defaults, named <graph>_<dtype>) are
 *                          compiled as C by gcc; one C++17 translation unit includes all their
 *                          headers together with kerngen.h and kg_check.h, compiles under
 *                          g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror, links against the C
 *                          objects and libkerngen.a (C linkage, no mangled names), and runs:
 *                          every forward, VJP and JVP is called on buffers sized by the header's
 *                          macros (static_assert'ed equal to the library's own counts) and must
 *                          return 0 with finite outputs; it calls kg_graphs() from C++ too.
 *                          The word `restrict` stays free in C++ code after the headers.
 *   includer_restrict_macro  a C++ file that defines `restrict` itself before including the
 *                          headers can still use its macro afterwards; a C99 file can include
 *                          every header at once (-Wall -Wextra -Wpedantic -Werror).
 *
 * The compilers run through /bin/sh with their output in a log file that a failure prints. All
 * files live in one mkdtemp() directory that the group teardown removes.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kg_aot.h" /* xprintf, slurp */

static char g_dir[64];           /* mkdtemp() directory */
static char g_root[PATH_MAX];    /* repository root (KERNGEN_ROOT or the working directory) */
static char g_lib[PATH_MAX];     /* the libkerngen.a next to $KERNGEN_BIN */

/* Runs cmd with sh in the repository root, output into g_dir/log; returns the exit code and
   prints the command and its output when that is not `expect`. */
static int sh_expect(int expect, const char *cmd)
{
    char *full = xprintf("cd '%s' && { %s ; } > '%s/log' 2>&1", g_root, cmd, g_dir);
    int st = system(full);
    free(full);
    int rc = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc != expect) {
        char *show = xprintf("cat '%s/log' >&2", g_dir);
        fprintf(stderr, "$ %s\n(exit %d, expected %d)\n", cmd, rc, expect);
        if (system(show) == -1)
            fprintf(stderr, "(cannot show the log)\n");
        free(show);
    }
    return rc;
}

static void upper(char *s)
{
    for (; *s; s++)
        *s = (char)toupper((unsigned char)*s);
}

static int group_setup(void **state)
{
    (void)state;
    const char *root = getenv("KERNGEN_ROOT");
    const char *bin = getenv("KERNGEN_BIN");
    if (!realpath(root && *root ? root : ".", g_root)) {
        perror("test_cxx: repository root");
        return -1;
    }
    /* the library the test binary itself links: build/ or build-asan/ */
    snprintf(g_lib, sizeof g_lib, "%s", bin && *bin ? bin : "build/kerngen");
    char *slash = strrchr(g_lib, '/');
    snprintf(slash ? slash + 1 : g_lib, sizeof g_lib - (size_t)(slash ? slash + 1 - g_lib : 0), "libkerngen.a");
    char *abs = realpath(g_lib, NULL);
    if (!abs) {
        fprintf(stderr, "test_cxx: %s not found (set KERNGEN_BIN to build/kerngen)\n", g_lib);
        return -1;
    }
    snprintf(g_lib, sizeof g_lib, "%s", abs);
    free(abs);
    snprintf(g_dir, sizeof g_dir, "/tmp/kg_cxx_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = xprintf("rm -rf '%s'", g_dir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

static const char *const dtypes[] = {"f32", "f64"};
#define pass_names(p) kg_pass_name((kg_pass)(p))

/* The C++ for one kernel: static_asserts on its size macros and a block calling each pass.
   Returns the number of calls written. */
static int write_kernel_cxx(FILE *f, const kg_kernel *k, const char *name, const char *ctype)
{
    int calls = 0;
    char *un = xprintf("%s", name);
    upper(un);
    char seen[4096] = " ";
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!kg_has_pass(k, (kg_pass)p))
            continue;
        int n = kg_nargs(k, (kg_pass)p);
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            char *key = xprintf(" %s ", a->cname);
            if (!strstr(seen, key) && strlen(seen) + strlen(key) < sizeof seen) {
                char *uc = xprintf("%s", a->cname);
                upper(uc);
                fprintf(f, "static_assert(%s_%s_SIZE == %zu, \"%s %s\");\n", un, uc, a->count, name, a->cname);
                strcat(seen, key + 1);
                free(uc);
            }
            free(key);
        }
        char *up = xprintf("%s", pass_names(p));
        upper(up);
        fprintf(f, "static_assert(%s_%s_WS_SIZE == %zu, \"%s %s workspace\");\n", un, up, kg_ws_size(k, (kg_pass)p),
                name, pass_names(p));
        free(up);
    }
    fprintf(f, "static int run_%s()\n{\n    int bad = 0;\n", name);
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!kg_has_pass(k, (kg_pass)p))
            continue;
        calls++;
        int n = kg_nargs(k, (kg_pass)p);
        char *up = xprintf("%s", pass_names(p));
        upper(up);
        fprintf(f, "    {\n");
        for (int i = 0; i < n; i++) {
            const kg_arg *a = kg_arg_at(k, (kg_pass)p, i);
            char *uc = xprintf("%s", a->cname);
            upper(uc);
            if (kg_role_reads(a->role)) /* saved statistics (std, 1/std...) are positive */
                fprintf(f, "        auto a%d = input<%s>(%s_%s_SIZE, %d, %s);\n", i, ctype, un, uc, i,
                        strcmp(a->init, "positive") == 0 || a->role == KG_ROLE_SAVED ? "true" : "false");
            else
                fprintf(f, "        std::vector<%s> a%d(%s_%s_SIZE);\n", ctype, i, un, uc);
            free(uc);
        }
        fprintf(f, "        std::vector<%s> ws(%s_%s_WS_SIZE + 1);\n", ctype, un, up);
        fprintf(f, "        int rc = %s_%s(", name, pass_names(p));
        for (int i = 0; i < n; i++)
            fprintf(f, "a%d.data(), ", i);
        fprintf(f, "ws.data());\n        bool ok = rc == 0");
        for (int i = 0; i < n; i++)
            if (kg_role_writes(kg_arg_at(k, (kg_pass)p, i)->role))
                fprintf(f, " && finite(a%d)", i);
        fprintf(f, ";\n        if (!ok)\n            std::fprintf(stderr, \"%s_%s: returned %%d or a non-finite output\\n\", rc);\n"
                   "        bad += !ok;\n        calls++;\n    }\n", name, pass_names(p));
        free(up);
    }
    fprintf(f, "    return bad;\n}\n\n");
    free(un);
    return calls;
}

static void every_graph_from_cxx(void **state)
{
    (void)state;
    char *list = NULL, *err = NULL;
    assert_int_equal(kg_graphs(&list, &err), KG_OK);
    char *cpp_path = xprintf("%s/all.cpp", g_dir);
    FILE *cpp = fopen(cpp_path, "w");
    assert_non_null(cpp);
    fprintf(cpp, "// generated by tests/test_cxx.c\n#include <cmath>\n#include <cstdio>\n#include <cstdlib>\n"
                 "#include <vector>\n\n#include \"kerngen.h\"\n#include \"kg_check.h\"\n");
    int nkernels = 0, ngraphs = 0, failures = 0, ncalls = 0;
    char *save = NULL;
    char **names = NULL;
    for (char *g = strtok_r(list, "\n", &save); g; g = strtok_r(NULL, "\n", &save)) {
        ngraphs++;
        for (int d = 0; d < 2; d++) {
            kg_request req = {0};
            char *name = xprintf("%s_%s", g, dtypes[d]);
            req.graph = g;
            req.dtype = dtypes[d];
            req.unroll = "none"; /* emit's default */
            req.name = name;
            kg_kernel *k = NULL;
            if (kg_generate(&req, &k, &err) != KG_OK || kg_write_files(k, g_dir, &err) != KG_OK) {
                fprintf(stderr, "%s: %s\n", name, err ? err : "?");
                free(err);
                err = NULL;
                failures++;
            } else {
                fprintf(cpp, "#include \"%s.h\"\n", name);
                names = realloc(names, sizeof *names * (size_t)(nkernels + 1));
                assert_non_null(names);
                names[nkernels++] = name;
                name = NULL;
            }
            kg_free(k);
            free(name);
        }
    }
    fputs("\nstatic int calls = 0;\n\n"
                 "template <typename T> static std::vector<T> input(std::size_t n, int salt, bool positive)\n{\n"
                 "    std::vector<T> v(n);\n    for (std::size_t i = 0; i < n; i++) {\n"
                 "        T t = static_cast<T>(static_cast<int>((i * 7 + static_cast<std::size_t>(salt) * 3) % 13) - 6) / T(4);\n"
                 "        v[i] = positive ? T(0.5) + std::fabs(t) : t;\n    }\n    return v;\n}\n\n"
                 "template <typename T> static bool finite(const std::vector<T> &v)\n{\n"
          "    for (T t : v)\n        if (!std::isfinite(t))\n            return false;\n    return true;\n}\n\n",
          cpp);
    /* the size checks and calls, one function per kernel (generated again: cheap, and the
       kernel objects above are already freed) */
    for (int i = 0; i < nkernels; i++) {
        kg_request req = {0};
        char *graph = xprintf("%s", names[i]);
        char *us = strrchr(graph, '_');
        const char *dtype = us + 1;
        *us = '\0';
        req.graph = graph;
        req.dtype = dtype;
        req.unroll = "none";
        req.name = names[i];
        kg_kernel *k = NULL;
        assert_int_equal(kg_generate(&req, &k, &err), KG_OK);
        ncalls += write_kernel_cxx(cpp, k, names[i], strcmp(dtype, "f32") == 0 ? "float" : "double");
        kg_free(k);
        free(graph);
    }
    fprintf(cpp, "int main()\n{\n    int bad = 0;\n");
    for (int i = 0; i < nkernels; i++)
        fprintf(cpp, "    bad += run_%s();\n", names[i]);
    fprintf(cpp, "    // kerngen.h from C++: the library's catalogue has the graphs compiled in here\n"
                 "    char *list = nullptr, *err = nullptr;\n"
                 "    int graphs = 0;\n"
                 "    if (kg_graphs(&list, &err) != KG_OK)\n        return std::fprintf(stderr, \"kg_graphs failed\\n\"), 1;\n"
                 "    for (const char *p = list; *p; p++)\n        graphs += *p != '\\n' && (p == list || p[-1] == '\\n');\n"
                 "    std::free(list);\n"
                 "    // the headers left the word alone\n    int restrict = %d;\n"
                 "    std::printf(\"all.cpp: %%d kernels, %%d calls, %%d failed; kg_graphs lists %%d graphs\\n\", %d, calls, bad, graphs);\n"
                 "    return bad || graphs != restrict || calls != %d;\n}\n",
            ngraphs, nkernels, ncalls);
    fclose(cpp);
    free(list);
    assert_int_equal(failures, 0);
    assert_true(ngraphs > 0 && nkernels == 2 * ngraphs);

    /* the C objects (gcc, two at a time), the C++ program, and a run. Under ./build.sh asan the
       library is instrumented, and the link needs the sanitizers' runtimes too. */
    char *cmd = xprintf("set -e; cd '%s'; ls *.c | xargs -P2 -n4 gcc -std=c99 -O0 -ffp-contract=off -Wall -Wextra "
                        "-Wpedantic -Werror -c; "
                        "san=; if nm -u '%s' | grep -q __asan_; then san=-fsanitize=address,undefined; fi; "
                        "g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I. -I'%s/runtime' -o all all.cpp *.o '%s' "
                        "-llua5.4 -lm -lpthread -ldl $san; ./all",
                        g_dir, g_lib, g_root, g_lib);
    int rc = sh_expect(0, cmd);
    free(cmd);
    for (int i = 0; i < nkernels; i++)
        free(names[i]);
    free(names);
    free(cpp_path);
    assert_int_equal(rc, 0);
}

static void includer_restrict_macro(void **state)
{
    (void)state;
    /* two kernels' headers in one file, in C++ after a restrict macro of the includer's own,
       and in C99 */
    const char *graphs[] = {"layernorm", "rmsnorm"};
    for (int i = 0; i < 2; i++) {
        kg_request req = {0};
        char *err = NULL;
        kg_kernel *k = NULL;
        req.graph = graphs[i];
        req.name = graphs[i];
        assert_int_equal(kg_generate(&req, &k, &err), KG_OK);
        assert_int_equal(kg_write_files(k, g_dir, &err), KG_OK);
        kg_free(k);
    }
    char *cmd = xprintf(
        "cd '%s' && printf '%%s\\n' '#define restrict __restrict__' '#include \"layernorm.h\"' '#include \"rmsnorm.h\"'"
        " 'static int first(int *restrict p) { return *p; }' 'int main() { int v = 0; return first(&v); }' > own.cpp"
        " && g++ -std=c++17 -Wall -Wextra -Wpedantic -Werror -I. -o own own.cpp && ./own"
        " && printf '%%s\\n' '#include \"layernorm.h\"' '#include \"rmsnorm.h\"' '#include \"layernorm.h\"'"
        " 'int main(void) { return 0; }' > both.c"
        " && gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only both.c",
        g_dir);
    int rc = sh_expect(0, cmd);
    free(cmd);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_graph_from_cxx),
        cmocka_unit_test(includer_restrict_macro),
    };
    return cmocka_run_group_tests_name("test_cxx", tests, group_setup, group_teardown);
}
