/*
 * test_tier.c - the cc tier (runtime/kg_cc.c) and the tier switch (runtime/kg_tier.c).
 *
 *   sha256               the cache key's hash against the FIPS 180-4 examples
 *   cache_miss_hit       a miss compiles and caches one entry; the next kernel loads it (a hit)
 *   cache_bad_entries    corrupt, truncated and foreign files at an entry's name are removed and
 *                        rebuilt, never loaded
 *   cache_refused_dirs   a directory writable by others, a symlink, one owned by another user
 *                        (as root): tcc runs, and the note and kg_cc_status say why
 *   cache_eviction       beyond KERNGEN_CACHE_MAX the oldest entries go (not the new one), stale
 *                        temporaries too; a malformed KERNGEN_CACHE_MAX is refused
 *   concurrent_fillers   two processes fill one entry at once: both run cc, one whole entry stays
 *   no_compiler          CC missing, not running, or failing: tcc runs, one clear note
 *   switch_under_calls   "auto": threads call the kernel while the background compile switches
 *                        it from tcc to cc; every call's bits equal the reference
 *   free_while_compiling kg_free during the background compile cancels it cleanly
 *   identity_all_graphs  every graph (and gelu=erf where it applies), f32 and f64, every pass:
 *                        the cc tier's bits equal the tcc tier's
 *   cli                  kerngen run/check/bench --jit, bench's table and --json
 *
 * Every test uses its own cache directory (KERNGEN_CACHE_DIR) under a mkdtemp() directory,
 * removed at the end. The compiles cost 0.1-1 s each; the identity test starts them all as
 * "auto" kernels at once, which the library runs one per CPU.
 *
 * ThreadSanitizer: build the library's sources into this test with -fsanitize=thread, e.g.
 *   gcc -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -fsanitize=thread -Iruntime -Ibuild \
 *       -I/usr/include/lua5.4 -o build/test_tier_tsan tests/test_tier.c runtime/kg_[a-z]*.c \
 *       build/kg_embedded.c build/kg_vm_*.c build/tcc/[a-z]*.o -llua5.4 -lm -lpthread -ldl -lcmocka
 *   KG_TEST_FILTER='switch*' build/test_tier_tsan    (cmocka's test filter; '*' runs all)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>

#include "kg_aot.h"
#include "kg_internal.h" /* kg__sha256 */
#include "kg_npy.h"

static char *g_root; /* the mkdtemp() directory */

/* A fresh cache directory named NAME, made the current KERNGEN_CACHE_DIR. Returns its path
   (static storage, valid until the next call). */
static const char *fresh_cache(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    kgt_remove_tree(path);
    assert_int_equal(setenv("KERNGEN_CACHE_DIR", path, 1), 0);
    return path;
}

/* A kernel of GRAPH (NULL-terminated params) in tier JIT, compiled; fails the test on error. */
static kg_kernel *build_tier(const char *graph, const char *dtype, const char *jit, const char *const *params)
{
    kg_request req = {0};
    int n = 0;
    while (params && params[n])
        n++;
    req.graph = graph;
    req.params = params;
    req.nparams = n;
    req.dtype = dtype;
    req.jit = jit;
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(&req, &k, &err);
    if (st == KG_OK && (st = kg_compile(k, &err)) != KG_OK)
        kg_free(k);
    if (st != KG_OK)
        fail_msg("%s (%s): status %d: %s", graph, jit ? jit : "tcc", (int)st, err ? err : "?");
    return k;
}

static const char *note_of(const kg_kernel *k) { return kg_tier_note(k) ? kg_tier_note(k) : "(no note)"; }

#define assert_note(k, text)                                                                          \
    do {                                                                                              \
        if (!strstr(note_of(k), text))                                                                \
            fail_msg("note '%s' does not say '%s'", note_of(k), text);                               \
    } while (0)

/* Entries (<64 hex>.so) and temporary files (.tmp-*) in dir. */
static void count_files(const char *dir, int *entries, int *temps)
{
    *entries = *temps = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, ".tmp-", 5) == 0)
            ++*temps;
        else if (n == 67 && strcmp(e->d_name + 64, ".so") == 0)
            ++*entries;
    }
    closedir(d);
}

/* The path of the one entry in dir (malloc'd). */
static char *only_entry(const char *dir)
{
    int entries, temps;
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 1);
    DIR *d = opendir(dir);
    struct dirent *e;
    char *path = NULL;
    while ((e = readdir(d)) != NULL)
        if (strlen(e->d_name) == 67)
            path = xprintf("%s/%s", dir, e->d_name);
    closedir(d);
    assert_non_null(path);
    return path;
}

/* Every pass of A and B on the same deterministic inputs: identical return codes and bits. */
static char *passes_differ(const kg_kernel *a, const kg_kernel *b, const char *name_a, const char *name_b)
{
    for (int p = 0; p < KG_NPASSES; p++) {
        if (!kg_has_pass(a, (kg_pass)p))
            continue;
        argset x, y;
        argset_make(&x, a, (kg_pass)p);
        argset_make(&y, b, (kg_pass)p);
        int ra = kg_call(a, (kg_pass)p, x.args, x.n + 1), rb = kg_call(b, (kg_pass)p, y.args, y.n + 1);
        char *d = ra != rb ? xprintf("%s: return codes differ: %s %d, %s %d", pass_names(p), name_a, ra, name_b, rb)
                           : outputs_differ(a, (kg_pass)p, &x, &y, name_a, name_b);
        argset_free(&x);
        argset_free(&y);
        if (d)
            return d;
    }
    return NULL;
}

static const char *const LN_SMALL[] = {"rows=3", "dim=5", NULL};

/* ---------------------------------------------------------------------------------------- */

static void sha256(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *hex;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    unsigned char d[32];
    char hex[65];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kg__sha256(cases[i].text, strlen(cases[i].text), d);
        for (int j = 0; j < 32; j++)
            snprintf(hex + 2 * j, 3, "%02x", d[j]);
        assert_string_equal(hex, cases[i].hex);
    }
    char *million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    kg__sha256(million, 1000000, d);
    free(million);
    for (int j = 0; j < 32; j++)
        snprintf(hex + 2 * j, 3, "%02x", d[j]);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void cache_miss_hit(void **state)
{
    (void)state;
    const char *dir = fresh_cache("miss_hit");
    kg_kernel *ref = build_tier("layernorm", "f64", NULL, LN_SMALL);
    assert_string_equal(kg_tier(ref), "tcc");
    assert_null(kg_tier_note(ref));
    kg_kernel *a = build_tier("layernorm", "f64", "cc", LN_SMALL);
    assert_string_equal(kg_tier(a), "cc");
    assert_note(a, "cache miss");
    char *entry = only_entry(dir);
    assert_non_null(strstr(note_of(a), entry));
    struct stat sb;
    assert_int_equal(lstat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    kg_kernel *b = build_tier("layernorm", "f64", "cc", LN_SMALL);
    assert_string_equal(kg_tier(b), "cc");
    assert_note(b, "cache hit");
    assert_string_equal(kg_wait(b), "cc");
    int entries, temps;
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 1);
    assert_int_equal(temps, 0);
    char *d = passes_differ(ref, a, "tcc", "cc");
    if (!d)
        d = passes_differ(ref, b, "tcc", "cc (hit)");
    if (d)
        fail_msg("%s", d);
    /* another request is another entry; a second compile of one kernel does nothing */
    const char *other[] = {"rows=3", "dim=6", NULL};
    kg_kernel *c = build_tier("layernorm", "f64", "cc", other);
    char *err = NULL;
    assert_int_equal(kg_compile(c, &err), KG_OK);
    assert_note(c, "cache miss");
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 2);
    free(entry);
    kg_free(ref);
    kg_free(a);
    kg_free(b);
    kg_free(c);
}

/* Replaces the entry's bytes by what damage() leaves, then checks a rebuild with its note. */
static void damaged(const char *dir, const char *path, const char *how, const char *expect)
{
    size_t len = 0;
    char *bytes = slurp(path, &len);
    assert_non_null(bytes);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (strcmp(how, "flip") == 0) { /* one bit in the middle: still an ELF file of the right size */
        bytes[len / 2] ^= 0x10;
        fwrite(bytes, 1, len, f);
    } else if (strcmp(how, "truncate") == 0) {
        fwrite(bytes, 1, len / 2, f);
    } else if (strcmp(how, "empty") == 0) {
    } else { /* text, longer than a trailer */
        for (int i = 0; i < 20; i++)
            fputs("not a shared object\n", f);
    }
    fclose(f);
    free(bytes);
    kg_kernel *ref = build_tier("layernorm", "f32", NULL, LN_SMALL);
    kg_kernel *k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_string_equal(kg_tier(k), "cc");
    assert_note(k, "replaced");
    assert_note(k, expect);
    char *d = passes_differ(ref, k, "tcc", "cc (rebuilt)");
    if (d)
        fail_msg("%s: %s", how, d);
    char *after = only_entry(dir);
    assert_string_equal(after, path);
    free(after);
    kg_kernel *again = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_note(again, "cache hit");
    kg_free(again);
    kg_free(k);
    kg_free(ref);
}

static void cache_bad_entries(void **state)
{
    (void)state;
    const char *dir = fresh_cache("bad_entries");
    kg_kernel *k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_note(k, "cache miss");
    kg_free(k);
    char *path = only_entry(dir);
    damaged(dir, path, "flip", "corrupt (checksum mismatch)");
    damaged(dir, path, "truncate", "truncated");
    damaged(dir, path, "empty", "truncated");
    damaged(dir, path, "text", "truncated or not an entry");
    /* a symlink at the entry's name is not followed */
    char *target = xprintf("%s.target", path);
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_string_equal(kg_tier(k), "cc");
    assert_note(k, "the cache entry was a symbolic link; replaced");
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    kg_free(k);
    unlink(target);
    free(target);
    free(path);
}

/* A kernel in tier cc with the cache at dir: tcc runs, and the note and kg_cc_status say why. */
static void refused(const char *what, const char *expect)
{
    kg_kernel *ref = build_tier("layernorm", "f32", NULL, LN_SMALL);
    kg_kernel *k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_string_equal(kg_tier(k), "tcc");
    assert_note(k, "cc tier unavailable, running tcc");
    assert_note(k, expect);
    char *note = NULL;
    assert_int_equal(kg_cc_status(&note), KG_EINPUT);
    assert_non_null(note);
    if (!strstr(note, expect))
        fail_msg("%s: kg_cc_status says '%s'", what, note);
    free(note);
    char *d = passes_differ(ref, k, "tcc", "tcc (fallback)");
    if (d)
        fail_msg("%s", d);
    kg_free(k);
    kg_free(ref);
}

static void cache_refused_dirs(void **state)
{
    (void)state;
    const char *dir = fresh_cache("open");
    char *path = xstrdup(dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, 0777), 0);
    refused("mode 0777", "writable by group or others (mode 0777)");
    assert_int_equal(chmod(path, 0720), 0);
    refused("mode 0720", "writable by group or others");
    int entries, temps;
    count_files(path, &entries, &temps);
    assert_int_equal(entries + temps, 0); /* nothing was written there */

    char *good = xprintf("%s/good", g_root), *link = xprintf("%s/link", g_root);
    assert_int_equal(mkdir(good, 0700), 0);
    assert_int_equal(symlink(good, link), 0);
    setenv("KERNGEN_CACHE_DIR", link, 1);
    refused("symlink", "symbolic link");

    char *file = xprintf("%s/file", g_root);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    setenv("KERNGEN_CACHE_DIR", file, 1);
    refused("a file", "not a directory");

    if (geteuid() == 0) {
        char *theirs = xprintf("%s/theirs", g_root);
        assert_int_equal(mkdir(theirs, 0700), 0);
        assert_int_equal(chown(theirs, 65534, 65534), 0);
        setenv("KERNGEN_CACHE_DIR", theirs, 1);
        refused("foreign owner", "owned by uid 65534, not by you (uid 0): refused");
        free(theirs);
    } else {
        print_message("not root: the foreign-owner case is skipped\n");
    }
    /* the default location: $XDG_CACHE_HOME/kerngen, created 0700 with its parent */
    char *xdg = xprintf("%s/xdg", g_root), *made = xprintf("%s/xdg/kerngen", g_root);
    unsetenv("KERNGEN_CACHE_DIR");
    setenv("XDG_CACHE_HOME", xdg, 1);
    char *note = NULL;
    assert_int_equal(kg_cc_status(&note), KG_OK);
    assert_non_null(strstr(note, made));
    free(note);
    struct stat sb;
    assert_int_equal(lstat(made, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    unsetenv("XDG_CACHE_HOME");
    free(xdg);
    free(made);
    free(file);
    free(good);
    free(link);
    free(path);
}

static void write_sized(const char *path, size_t size, time_t age)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < size; i++)
        fputc('x', f);
    fclose(f);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void cache_eviction(void **state)
{
    (void)state;
    const char *dir = fresh_cache("eviction");
    assert_int_equal(mkdir(dir, 0700), 0);
    char *old[3];
    for (int i = 0; i < 3; i++) { /* 100 KB each, 3, 2 and 1 hours old */
        old[i] = xprintf("%s/%064d.so", dir, i);
        write_sized(old[i], 100000, (3 - i) * 3600);
    }
    char *stale = xprintf("%s/.tmp-stale", dir), *fresh = xprintf("%s/.tmp-fresh", dir);
    write_sized(stale, 10, 7200);
    write_sized(fresh, 10, 0);
    setenv("KERNGEN_CACHE_MAX", "250K", 1); /* 300 KB + the new entry: down to 200 KB */
    kg_kernel *k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_note(k, "cache miss");
    kg_free(k);
    struct stat sb;
    assert_int_equal(lstat(old[0], &sb), -1);
    assert_int_equal(lstat(old[1], &sb), -1);
    assert_int_equal(lstat(old[2], &sb), 0);
    assert_int_equal(lstat(stale, &sb), -1);
    assert_int_equal(lstat(fresh, &sb), 0);
    int entries, temps;
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 2); /* old[2] and the new one */
    assert_int_equal(temps, 1);
    /* the new entry survives even when it alone exceeds the bound */
    setenv("KERNGEN_CACHE_MAX", "1K", 1);
    const char *other[] = {"rows=2", "dim=9", NULL};
    k = build_tier("layernorm", "f32", "cc", other);
    assert_string_equal(kg_tier(k), "cc");
    kg_free(k);
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 1);
    setenv("KERNGEN_CACHE_MAX", "lots", 1);
    k = build_tier("layernorm", "f32", "cc", LN_SMALL);
    assert_string_equal(kg_tier(k), "tcc");
    assert_note(k, "KERNGEN_CACHE_MAX='lots'");
    kg_free(k);
    unsetenv("KERNGEN_CACHE_MAX");
    for (int i = 0; i < 3; i++)
        free(old[i]);
    free(stale);
    free(fresh);
}

/* Two processes fill the same entry at once (started together through a pipe). */
static void concurrent_fillers(void **state)
{
    (void)state;
    const char *dir = fresh_cache("fillers");
    const char *params[] = {"rows=4", "dim=7", NULL};
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[2];
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char c;
            close(gate[1]);
            while (read(gate[0], &c, 1) < 0 && errno == EINTR) /* EOF: go */
                ;
            kg_request req = {0};
            req.graph = "layernorm";
            req.params = params;
            req.nparams = 2;
            req.jit = "cc";
            kg_kernel *k;
            char *err;
            int ok = kg_generate(&req, &k, &err) == KG_OK && kg_compile(k, &err) == KG_OK &&
                     strcmp(kg_tier(k), "cc") == 0;
            if (!ok)
                fprintf(stderr, "filler %d: %s\n", i, kg_tier_note(k) ? kg_tier_note(k) : "?");
            _exit(ok ? 0 : 1);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int i = 0; i < 2; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    int entries, temps;
    count_files(dir, &entries, &temps);
    assert_int_equal(entries, 1);
    assert_int_equal(temps, 0);
    kg_kernel *k = build_tier("layernorm", "f32", "cc", params);
    assert_note(k, "cache hit");
    kg_free(k);
}

static void no_compiler(void **state)
{
    (void)state;
    fresh_cache("no_compiler");
    static const struct {
        const char *cc, *expect;
    } cases[] = {
        {"/nonexistent/cc", "no C compiler: /nonexistent/cc does not exist"},
        {"kg-no-such-compiler", "no C compiler: 'kg-no-such-compiler' is not on PATH (set CC)"},
        {"false", "does not run: `false --version` failed"},
        {"cc -include /nonexistent/kg.h", "cc failed (exit status 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("CC", cases[i].cc, 1);
        kg_kernel *ref = build_tier("layernorm", "f32", NULL, LN_SMALL);
        for (int auto_tier = 0; auto_tier < 2; auto_tier++) {
            kg_kernel *k = build_tier("layernorm", "f32", auto_tier ? "auto" : "cc", LN_SMALL);
            assert_string_equal(kg_wait(k), "tcc");
            assert_note(k, "cc tier unavailable, running tcc: ");
            assert_note(k, cases[i].expect);
            char *d = passes_differ(ref, k, "tcc", "fallback");
            if (d)
                fail_msg("%s", d);
            kg_free(k);
        }
        char *note = NULL;
        kg_status st = kg_cc_status(&note);
        assert_non_null(note);
        if (i < 3) {
            assert_int_equal(st, KG_EINPUT);
            assert_non_null(strstr(note, cases[i].expect));
        } else {
            assert_int_equal(st, KG_OK); /* it runs: only compiling fails */
        }
        free(note);
        kg_free(ref);
    }
    unsetenv("CC");
}

/* ---- the switch under concurrent calls ---- */

enum { CALLERS = 4, AFTER_SWITCH = 50 };

typedef struct {
    kg_kernel *k;
    const argset *want_fwd, *want_vjp;
    int failures;
    long before, after; /* calls before and after this thread saw the cc tier */
} caller;

static void *call_loop(void *arg)
{
    caller *c = arg;
    argset fwd, vjp;
    argset_make(&fwd, c->k, KG_FORWARD);
    argset_make(&vjp, c->k, KG_VJP);
    while (c->after < AFTER_SWITCH) {
        int cc = strcmp(kg_tier(c->k), "cc") == 0;
        if (kg_call(c->k, KG_FORWARD, fwd.args, fwd.n + 1) != 0 || kg_call(c->k, KG_VJP, vjp.args, vjp.n + 1) != 0)
            c->failures++;
        char *d = outputs_differ(c->k, KG_FORWARD, &fwd, c->want_fwd, "caller", "reference");
        if (!d)
            d = outputs_differ(c->k, KG_VJP, &vjp, c->want_vjp, "caller", "reference");
        if (d) {
            c->failures++;
            free(d);
        }
        if (cc)
            c->after++;
        else
            c->before++;
    }
    argset_free(&fwd);
    argset_free(&vjp);
    return NULL;
}

static void switch_under_calls(void **state)
{
    (void)state;
    fresh_cache("switch"); /* empty: the background compile takes a while */
    const char *params[] = {"rows=16", "dim=48", NULL};
    kg_kernel *ref = build_tier("layernorm", "f32", NULL, params);
    argset want_fwd, want_vjp;
    argset_make(&want_fwd, ref, KG_FORWARD);
    argset_make(&want_vjp, ref, KG_VJP);
    assert_int_equal(kg_call(ref, KG_FORWARD, want_fwd.args, want_fwd.n + 1), 0);
    assert_int_equal(kg_call(ref, KG_VJP, want_vjp.args, want_vjp.n + 1), 0);

    kg_kernel *k = build_tier("layernorm", "f32", "auto", params);
    assert_string_equal(kg_tier(k), "tcc"); /* cc cannot be ready: its cache is empty */
    assert_null(kg_tier_note(k));          /* nothing to say while it compiles */
    pthread_t t[CALLERS];
    caller c[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        c[i] = (caller){k, &want_fwd, &want_vjp, 0, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, call_loop, &c[i]), 0);
    }
    const char *tier = kg_wait(k);
    long before = 0, after = 0;
    int failures = 0;
    for (int i = 0; i < CALLERS; i++) { /* each runs until it has seen cc AFTER_SWITCH times */
        pthread_join(t[i], NULL);
        before += c[i].before, after += c[i].after, failures += c[i].failures;
    }
    print_message("  %ld calls before the switch, %ld after, %d wrong\n", before, after, failures);
    assert_string_equal(tier, "cc");
    assert_note(k, "cache miss");
    assert_int_equal(failures, 0);
    argset_free(&want_fwd);
    argset_free(&want_vjp);
    kg_free(k);
    kg_free(ref);
}

/* kg_free while the background compile regenerates, waits or runs the compiler. */
static void free_while_compiling(void **state)
{
    (void)state;
    const char *dir = fresh_cache("cancel");
    static const long delays_ms[] = {0, 10, 60, 150};
    for (size_t i = 0; i < sizeof delays_ms / sizeof delays_ms[0]; i++) {
        char dim[32];
        snprintf(dim, sizeof dim, "dim=%d", 20 + (int)i); /* a new entry each time */
        const char *params[] = {"rows=8", dim, NULL};
        kg_kernel *k = build_tier("layernorm", "f64", "auto", params);
        struct timespec pause = {0, delays_ms[i] * 1000000L};
        nanosleep(&pause, NULL);
        kg_free(k); /* must return, joining the thread, and leave no source or log behind */
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            size_t n = strlen(e->d_name);
            if (strncmp(e->d_name, ".tmp-", 5) == 0 && n > 2 &&
                (strcmp(e->d_name + n - 2, ".c") == 0 || strcmp(e->d_name + n - 4, ".log") == 0))
                fail_msg("left behind: %s", e->d_name);
        }
        if (d)
            closedir(d);
    }
}

/* ---- every graph: the cc tier's bits are the tcc tier's ---- */

typedef struct {
    char *label;
    kg_kernel *tcc, *cc;
} pair;

/* GRAPH at its small dims (kg_aot.h; the defaults when it has none or rejects them) plus EXTRA,
   as a tcc kernel and an "auto" one: 0, 1 when the graph rejects EXTRA. */
static int make_pair(const char *graph, const char *dtype, const char *extra, pair *p)
{
    kg_request r = request_for(graph, dtype, NULL);
    const char *params[10];
    for (int round = 0; round < 2; round++) {
        int n = 0;
        for (int i = 0; round == 0 && i < r.nparams && i < 8; i++)
            params[n++] = r.params[i];
        if (extra)
            params[n++] = extra;
        params[n] = NULL;
        kg_request q = r;
        q.params = params;
        q.nparams = n;
        kg_kernel *k = NULL;
        char *err = NULL;
        kg_status st = kg_generate(&q, &k, &err);
        if (st == KG_EINPUT && extra && n == 1) { /* no gelu attr */
            free(err);
            return 1;
        }
        if (st == KG_EINPUT && round == 0) { /* small dims gone stale: the defaults */
            free(err);
            continue;
        }
        if (st != KG_OK || (st = kg_compile(k, &err)) != KG_OK)
            fail_msg("%s %s: %s", graph, dtype, err ? err : "?");
        p->tcc = k;
        q.jit = "auto"; /* the same request (train pass included); cc compiles in the background */
        if ((st = kg_generate(&q, &p->cc, &err)) != KG_OK || (st = kg_compile(p->cc, &err)) != KG_OK)
            fail_msg("%s %s (auto): %s", graph, dtype, err ? err : "?");
        p->label = xprintf("%s %s%s%s", graph, dtype, extra ? " " : "", extra ? extra : "");
        return 0;
    }
    fail_msg("%s %s: no dims work", graph, dtype);
    return -1;
}

static void identity_all_graphs(void **state)
{
    (void)state;
    fresh_cache("identity");
    char *names = NULL, *err = NULL;
    assert_int_equal(kg_graphs(&names, &err), KG_OK);
    pair pairs[128];
    int n = 0;
    static const char *const dtypes[] = {"f32", "f64"};
    for (int dt = 0; dt < 2; dt++) {
        char *copy = xstrdup(names), *save = NULL;
        for (char *g = strtok_r(copy, "\n", &save); g; g = strtok_r(NULL, "\n", &save))
            for (int erf = 0; erf < 2 && n < 128; erf++)
                n += make_pair(g, dtypes[dt], erf ? "gelu=erf" : NULL, &pairs[n]) == 0;
        free(copy);
    }
    free(names);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        const char *tier = kg_wait(pairs[i].cc);
        char *d = strcmp(tier, "cc") != 0 ? xprintf("tier %s: %s", tier, note_of(pairs[i].cc))
                                          : passes_differ(pairs[i].tcc, pairs[i].cc, "tcc", "cc");
        if (d) {
            print_error("%s: %s\n", pairs[i].label, d);
            failed++;
            free(d);
        }
        kg_free(pairs[i].tcc);
        kg_free(pairs[i].cc);
        free(pairs[i].label);
    }
    print_message("  %d kernels, every pass: %d differ\n", n, failed);
    assert_true(n >= 32);
    assert_int_equal(failed, 0);
}

/* ---- the command line ---- */

static char *g_bin;

/* Runs kerngen with the arguments (NULL-terminated); returns its exit status, *out its stdout and
   stderr (malloc'd). */
static int kerngen(char **out, ...)
{
    const char *flags[] = {g_bin, NULL};
    char *log = xprintf("%s/cli.log", g_root);
    job j;
    job_init(&j, log, flags, NULL);
    va_list ap;
    va_start(ap, out);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        job_add(&j, a);
    va_end(ap);
    run_jobs(&j, 1);
    int status = j.status;
    *out = slurp(log, NULL);
    assert_non_null(*out);
    job_free(&j);
    free(log);
    return status;
}

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

static void cli(void **state)
{
    (void)state;
    const char *dir = fresh_cache("cli");
    char *out;
    /* run --jit: a fallback is one note on stderr, the run succeeds */
    char *ins[3];
    const char *names[3] = {"x", "gamma", "beta"};
    for (int i = 0; i < 3; i++) {
        float v[6] = {1, 2, 4, 0.5f, -1, 3};
        size_t shape[2] = {i == 0 ? 2 : 3, 3};
        char msg[256], *path = xprintf("%s/%s.npy", g_root, names[i]);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(kg_npy_fwrite(f, KG_NPY_F32, i == 0 ? 2 : 1, shape, v, path, msg, sizeof msg), 0);
        fclose(f);
        ins[i] = xprintf("--in=%s=%s", names[i], path);
        free(path);
    }
    char *outdir = xprintf("%s/out", g_root);
    setenv("CC", "/nonexistent/cc", 1);
    int rc = kerngen(&out, "run", "layernorm", "rows=2", "dim=3", "--jit", "cc", ins[0], ins[1], ins[2], "--out",
                     outdir, NULL);
    unsetenv("CC");
    if (rc != 0 || count(out, "cc tier unavailable, running tcc: no C compiler") != 1 || count(out, "cc tier") != 1)
        fail_msg("run --jit cc without a compiler: status %d, output:\n%s", rc, out);
    free(out);
    rc = kerngen(&out, "run", "layernorm", "rows=2", "dim=3", "--jit", "cc", ins[0], ins[1], ins[2], "--out",
                 outdir, NULL);
    if (rc != 0 || strstr(out, "cc tier"))
        fail_msg("run --jit cc: status %d, output:\n%s", rc, out);
    free(out);
    rc = kerngen(&out, "run", "layernorm", "rows=2", "dim=3", "--jit", "fast", ins[0], ins[1], ins[2], "--out",
                 outdir, NULL);
    if (rc != 2 || !strstr(out, "--jit: 'fast' is not one of tcc, cc, auto"))
        fail_msg("run --jit fast: status %d, output:\n%s", rc, out);
    free(out);

    /* check --jit cc: the checks run on cc kernels */
    rc = kerngen(&out, "check", "layernorm", "rows=2", "dim=3", "--jit", "cc", NULL);
    if (rc != 0 || !strstr(out, "PASS") || !strstr(out, "cc tier"))
        fail_msg("check --jit cc: status %d, output:\n%s", rc, out);
    free(out);

    /* bench: the table, and --json with its fixed keys; a private cache in $TMPDIR */
    setenv("TMPDIR", g_root, 1);
    rc = kerngen(&out, "bench", "layernorm", "rows=4", "dim=8", "--jit", "cc", NULL);
    static const char *const table[] = {"generate", "compile cc, cold (cache miss)", "compile cc, warm (cache hit)",
                                        "forward", "vjp", "jvp", "forward_train", "vjp_saved", "median",
                                        "interquartile"};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (rc != 0 || !strstr(out, table[i]))
            fail_msg("bench --jit cc: status %d, no '%s' in:\n%s", rc, table[i], out);
    free(out);
    rc = kerngen(&out, "bench", "layernorm", "rows=4", "dim=8", "--json", "--pass", "vjp_saved", NULL);
    static const char *const keys[] = {"\"schema\": \"kerngen-bench-1\"", "\"graph\": \"layernorm\"",
                                       "\"requested\": \"tcc\"", "\"tier\": \"tcc\"", "\"latency_ms\"",
                                       "\"generate\"", "\"compile_tcc\"", "\"compile_cc_cold\": null",
                                       "\"passes\"", "\"pass\": \"vjp_saved\"", "\"us_per_call\"", "\"q1\"",
                                       "\"q3\"", "\"calls_per_batch\"", "\"batches\"", "\"method\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (rc != 0 || !strstr(out, keys[i]))
            fail_msg("bench --json: status %d, no %s in:\n%s", rc, keys[i], out);
    if (strstr(out, "\"pass\": \"forward\""))
        fail_msg("bench --pass vjp_saved timed forward:\n%s", out);
    free(out);
    rc = kerngen(&out, "bench", "layernorm", "rows=4", "dim=8", "--jit", "auto", "--json", NULL);
    if (rc != 0 || !strstr(out, "\"tier\": \"cc\"") || !strstr(out, "\"cc_ready_cold\""))
        fail_msg("bench --jit auto: status %d:\n%s", rc, out);
    free(out);
    unsetenv("TMPDIR");
    int entries, temps;
    count_files(dir, &entries, &temps);
    assert_int_equal(temps, 0);
    assert_true(entries >= 2); /* run's and check's kernels; bench's went to its own cache */
    DIR *d = opendir(g_root);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "kerngen-bench-", 14) == 0)
            fail_msg("bench left its cache behind: %s", e->d_name);
    closedir(d);
    for (int i = 0; i < 3; i++)
        free(ins[i]);
    free(outdir);
}

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/kg-tier-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    g_root = strdup(tmpl);
    const char *bin = getenv("KERNGEN_BIN");
    if (!bin || !*bin)
        bin = "build/kerngen";
    char *cwd = getcwd(NULL, 0); /* glibc allocates */
    g_bin = bin[0] == '/' ? strdup(bin) : cwd ? xprintf("%s/%s", cwd, bin) : NULL;
    free(cwd);
    if (!g_bin || access(g_bin, X_OK) != 0) {
        fprintf(stderr, "test_tier: kerngen binary not found (set KERNGEN_BIN)\n");
        return -1;
    }
    unsetenv("CC");
    unsetenv("KERNGEN_CACHE_MAX");
    return g_root && g_bin ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kgt_remove_tree(g_root);
    free(g_root);
    free(g_bin);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256),
        cmocka_unit_test(cache_miss_hit),
        cmocka_unit_test(cache_bad_entries),
        cmocka_unit_test(cache_refused_dirs),
        cmocka_unit_test(cache_eviction),
        cmocka_unit_test(concurrent_fillers),
        cmocka_unit_test(no_compiler),
        cmocka_unit_test(switch_under_calls),
        cmocka_unit_test(free_while_compiling),
        cmocka_unit_test(identity_all_graphs),
        cmocka_unit_test(cli),
    };
    const char *filter = getenv("KG_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests_name("tier", tests, setup, teardown);
}
