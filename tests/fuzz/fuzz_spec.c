/* fuzz_spec: libFuzzer target for the spec loader and the generator behind it. The input is a
 * spec's text. kg_generate must end in success or a user error (KG_EINPUT, exit 2 for the CLI)
 * within the sandbox's budget, never a crash, a hang or an internal error; and what it
 * generates must compile and hold no token a spec chose outside an identifier position:
 *   - every comment is printable ASCII and opens no other comment,
 *   - no line ends in a backslash and no trigraph appears,
 *   - outside comments every identifier is a C keyword, a name the generator makes, or a
 *     name the kernel's argument list or function names declare;
 *   - no argument's name is also declared as a local (the accumulator acc0 once shadowed an
 *     input named so, and the kernel read its stack).
 * Run by ./build.sh fuzz. */
#define _GNU_SOURCE /* memfd_create */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kerngen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_keyword(const char *w, size_t n)
{
    static const char *const kw[] = {"const", "float", "double", "int", "restrict", "return", "for", "static",
                                     "inline", "if", "else", "void", "unsigned", "long", "union", "sizeof",
                                     "include", "define", "ifndef", "ifdef", "endif", "pragma", "defined",
                                     "elif", "extern", "math", "h", "optimize", "__clang__",
                                     /* templates/compiler_guard.c.in, KG_MATHFN (mathfn.lua) */
                                     "__attribute__", "noinline", "always_inline", "_Pragma",
                                     /* the C++ part of templates/kernel.h.in */
                                     "__cplusplus", "__restrict", "undef",
                                     /* the one libm function generated code calls */
                                     "sqrt", "sqrtf",
                                     /* the JIT's machine code (gen/x86.lua, templates/x86.c.in) */
                                     "__x86_64__", "__asm__", "volatile", "diagnostic", "ignored", NULL};
    for (int i = 0; kw[i]; i++)
        if (strlen(kw[i]) == n && strncmp(kw[i], w, n) == 0)
            return 1;
    return 0;
}

/* Names the generator makes: kg_* helpers, loop and lane variables, workspace pointers, short
   helper locals, upper-case macros. */
static int is_generated(const char *w, size_t n)
{
    if ((n > 3 && strncmp(w, "kg_", 3) == 0) || (n >= 2 && strncmp(w, "ws", 2) == 0))
        return 1;
    int upper = 1, short_lower = n <= 4;
    for (size_t i = 0; i < n; i++) {
        upper &= isupper((unsigned char)w[i]) || isdigit((unsigned char)w[i]) || w[i] == '_';
        short_lower &= islower((unsigned char)w[i]) || (i > 0 && isdigit((unsigned char)w[i]));
    }
    return upper || short_lower;
}

static int declared(const kg_kernel *k, const char *w, size_t n)
{
    for (int p = 0; p < KG_NPASSES; p++)
        for (int i = 0; i < kg_nargs(k, (kg_pass)p); i++) {
            const char *c = kg_arg_at(k, (kg_pass)p, i)->cname;
            if (strlen(c) == n && strncmp(c, w, n) == 0)
                return 1;
        }
    const char *base = kg_text(k, KG_TEXT_NAME); /* functions are <base>_<pass> */
    return strncmp(w, base, strlen(base)) == 0;
}

/* Whether s declares name as a local: float NAME, double *NAME, int NAME, or a later name of a
   declaration list (float t0 = 0, NAME = 0). Parameters read "float *restrict NAME". */
static int declares_local(const char *s, const char *name)
{
    static const char *const before[] = {"float ", "double ", "float *", "double *", "int ", ", ", NULL};
    size_t n = strlen(name);
    for (int i = 0; before[i]; i++) {
        size_t m = strlen(before[i]);
        for (const char *p = strstr(s, before[i]); p; p = strstr(p + 1, before[i])) {
            const char *w = p + m;
            if (strncmp(w, name, n) != 0 || isalnum((unsigned char)w[n]) || w[n] == '_')
                continue;
            if (i < 5 || strncmp(w + n, " = 0", 4) == 0)
                return 1;
        }
    }
    return 0;
}

/* In the kernel's own functions (<base>_..., which take the spec's names as parameters; the
   kg_* helpers have their own scope), no local has an argument's name. */
static void check_locals(const kg_kernel *k, const char *s)
{
    const char *base = kg_text(k, KG_TEXT_NAME);
    size_t nb = strlen(base);
    for (const char *line = s; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *name = strstr(line, base);
        if (name && name < line + len && name > line && name[-1] == ' ' && name[nb] == '_' && line[len - 1] == ')') {
            const char *end = strstr(line, "\n}\n"); /* the definition's body */
            if (!end)
                abort();
            char *body = strndup(line, (size_t)(end - line));
            for (int p = 0; p < KG_NPASSES; p++)
                for (int i = 0; i < kg_nargs(k, (kg_pass)p); i++) {
                    const char *c = kg_arg_at(k, (kg_pass)p, i)->cname;
                    if (declares_local(body, c)) {
                        fprintf(stderr, "fuzz_spec: argument '%s' is also declared as a local\n", c);
                        abort();
                    }
                }
            free(body);
        }
        line += len + (eol != NULL);
    }
}

static void check_text(const kg_kernel *k, const char *s)
{
    check_locals(k, s);
    for (const char *p = s; *p;) {
        if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            if (!end)
                abort();
            for (const char *q = p + 2; q < end; q++)
                if ((*q < 0x20 && *q != '\n') || *q > 0x7e || (q[0] == '/' && q[1] == '*'))
                    abort();
            p = end + 2;
        } else if (*p == '"') { /* the include of its own header, pragma arguments, machine code */
            /* KG_LANES and KG_SHORT (compiler_guard.c.in): "GCC unroll 1", "GCC unroll 8" */
            static const char unroll[] = "\"GCC unroll ";
            const char *end = strchr(p + 1, '"');
            if (!end || memchr(p, '\n', (size_t)(end - p)))
                abort();
            int is_unroll = end - p == sizeof unroll && strncmp(p, unroll, sizeof unroll - 1) == 0 &&
                            (end[-1] == '1' || end[-1] == '8');
            /* a line of x86.lua's asm: .byte 0xc4,..., movq 8(%%rax), %%rdx, 1:, jl 1b... ending in \n */
            int is_asm = end - p >= 3 && end[-2] == '\\' && end[-1] == 'n';
            for (const char *q = p + 1; q < end - (is_asm ? 2 : 0) && !is_unroll; q++)
                if (!isalnum((unsigned char)*q) && !strchr(is_asm ? "_.,$%(): " : "_.=-", *q))
                    abort();
            p = end + 1;
        } else if (p[0] == '\\' && p[1] == '\n') {
            abort();
        } else if (p[0] == '?' && p[1] == '?') {
            abort();
        } else if (isdigit((unsigned char)*p)) { /* a number: 1e-05f, 0x4B400000u */
            while (isalnum((unsigned char)*p) || *p == '.')
                p++;
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            const char *w = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            size_t n = (size_t)(p - w);
            if (!is_keyword(w, n) && !is_generated(w, n) && !declared(k, w, n)) {
                fprintf(stderr, "fuzz_spec: unexpected identifier '%.*s'\n", (int)n, w);
                abort();
            }
        } else {
            p++;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("spec.lua", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    kg_request req = {0};
    req.graph = path;
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(&req, &k, &err);
    if (st == KG_EINTERNAL) {
        fprintf(stderr, "fuzz_spec: internal error: %s\n", err);
        abort();
    }
    if (st == KG_OK) {
        check_text(k, kg_text(k, KG_TEXT_HEADER));
        check_text(k, kg_text(k, KG_TEXT_SOURCE));
        if (kg_compile(k, &err) == KG_EINTERNAL) {
            fprintf(stderr, "fuzz_spec: generated C does not compile: %s\n", err);
            abort();
        }
    }
    free(err);
    kg_free(k);
    close(fd);
    return 0;
}
