/* kg_cc: the optimizing tier's compiler and on-disk cache. A kernel's JIT unit
 * (KG_TEXT_JIT_SOURCE: hermetic C99, entry points kg_entry_<pass> taking packed arguments) is
 * compiled by the system C compiler into a shared object and loaded with dlopen.
 *
 * Compiler. $CC (default cc), split at blanks (no shell, no quoting), found on PATH and run as
 * a child process (posix_spawn in its own process group; stdin /dev/null; stdout and stderr to a
 * log kept for the message when it fails) as
 *     $CC -std=c99 -O3 -march=native -ffp-contract=off -fno-math-errno -fPIC -shared
 *         -fno-semantic-interposition -Wl,-Bsymbolic -o OUT SRC -lm
 * -ffp-contract=off and no -ffast-math keep tcc's bits (DESIGN.md); -fno-math-errno changes no
 * value (sqrt is exact) but lets gcc vectorize sqrt (an optimizer's update, per element). -Bsymbolic binds the unit's
 * calls to its own functions even when the host program defines the same names (an AOT build of
 * the same kernel), and lets gcc inline them. At most one compiler per online CPU runs at a time
 * in a process; further compiles wait for a slot.
 *
 * Cache. One directory per user: $KERNGEN_CACHE_DIR, else $XDG_CACHE_HOME/kerngen, else
 * $HOME/.cache/kerngen, created 0700 and refused when it is a symbolic link, not owned by the
 * effective user, or writable by group or others. An entry is <key>.so, key = SHA-256 of the
 * format version, the compiler (the file found on PATH: device, inode, size, mtime; and the first
 * line of `$CC --version`, run once per process and compiler), the flags, the CPU (-march=native
 * depends on it: /proc/cpuinfo's model and flags) and the source. Every entry ends with a 64-byte
 * trailer (magic, payload size, checksum, key), checked before dlopen maps anything: a truncated
 * or corrupt entry is removed and rebuilt, never loaded (a truncated mapping would SIGBUS). A
 * whole entry that dlopen refuses (out of memory, say) is kept, and tcc runs.
 * Writers compile into unique temporary names (.tmp-<key>-<random>.*, O_EXCL|O_NOFOLLOW) and
 * rename the sealed object into place, so concurrent fillers of one entry both compile, the last
 * rename wins, and every reader loads a whole file. A hit sets the entry's mtime (least recently
 * used order); after each insertion, when the entries exceed $KERNGEN_CACHE_MAX (default 256M),
 * the oldest go until 80% remain, and temporary files older than an hour (a crashed writer's)
 * are removed. */
#define _GNU_SOURCE /* getrandom */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kg_internal.h"

extern char **environ;

static const char *const CC_FLAGS[] = {"-std=c99", "-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared",
                                       "-fno-semantic-interposition", "-Wl,-Bsymbolic"};
enum { NFLAGS = sizeof CC_FLAGS / sizeof CC_FLAGS[0] };

#define FORMAT "kerngen cc tier, cache format 1"
#define DEFAULT_MAX "256M"
enum { TRAILER = 64, STALE_TEMP_S = 3600, LOG_SHOWN = 1500 };
static const char MAGIC[8] = {'K', 'G', 'C', 'C', 'v', '1', 0, 0}, END[8] = {'K', 'G', 'C', 'C', 'E', 'N', 'D', '\n'};

/* ---------------------------------------------------------------------------------------- */
/* SHA-256 (FIPS 180-4): the cache key */

typedef struct {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} sha256;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha_block(sha256 *s, const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6],
             h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + SHA_K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha_init(sha256 *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->n = 0;
}

static void sha_update(sha256 *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    s->len += len;
    if (s->n) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take, p += take, len -= take;
        if (s->n < 64)
            return;
        sha_block(s, s->buf);
        s->n = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha_block(s, p);
    memcpy(s->buf, p, len);
    s->n = len;
}

/* A string and its terminating NUL, so that adjacent fields cannot run into each other. */
static void sha_str(sha256 *s, const char *str) { sha_update(s, str, strlen(str) + 1); }

static void sha_final(sha256 *s, unsigned char out[32])
{
    uint64_t bits = s->len * 8;
    unsigned char pad[72] = {0x80};
    size_t npad = (s->n < 56 ? 56 : 120) - s->n;
    for (int i = 0; i < 8; i++)
        pad[npad + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha_update(s, pad, npad + 8);
    for (int i = 0; i < 32; i++)
        out[i] = (unsigned char)(s->h[i / 4] >> (24 - 8 * (i % 4)));
}

void kg__sha256(const void *data, size_t len, unsigned char digest[32])
{
    sha256 s;
    sha_init(&s);
    sha_update(&s, data, len);
    sha_final(&s, digest);
}

/* A fast 64-bit checksum of an entry's bytes: catches truncation and corruption on disk (the
   key, not this, is what names the content). */
static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001B3ull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* the environment, captured where kg_compile is called */

void kg_cc_env_free(kg_cc_env *env)
{
    free(env->cc);
    free(env->dir);
    free(env->parent);
    free(env->dir_problem);
    free(env->max);
    free(env->path);
    memset(env, 0, sizeof *env);
}

int kg_cc_env_capture(kg_cc_env *env)
{
    memset(env, 0, sizeof *env);
    const char *cc = getenv("CC"), *dir = getenv("KERNGEN_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    int bad = !(env->cc = kg_strdup(cc && *cc ? cc : "cc"));
    if (dir && *dir) {
        bad |= !(env->dir = kg_strdup(dir));
    } else if (xdg && xdg[0] == '/') { /* the XDG spec: relative values are invalid, ignore them */
        bad |= !(env->parent = kg_strdup(xdg)) || !(env->dir = kg_strdupf("%s/kerngen", xdg));
    } else if (home && home[0] == '/') {
        bad |= !(env->parent = kg_strdupf("%s/.cache", home)) || !(env->dir = kg_strdupf("%s/.cache/kerngen", home));
    } else {
        bad |= !(env->dir_problem = kg_strdup("no cache directory: set KERNGEN_CACHE_DIR, XDG_CACHE_HOME or HOME"));
    }
    const char *max = getenv("KERNGEN_CACHE_MAX"), *path = getenv("PATH"); /* unset or empty: the default */
    if (max && *max)
        bad |= !(env->max = kg_strdup(max));
    if (path)
        bad |= !(env->path = kg_strdup(path));
    if (bad)
        kg_cc_env_free(env);
    return bad ? -1 : 0;
}

/* "256M", "100K", "1G", "4096": bytes; -1 when malformed. */
static long long parse_size(const char *s)
{
    if (!s)
        s = DEFAULT_MAX;
    long long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (1LL << 50))
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (p == s)
        return -1;
    int shift = *p == 'K' || *p == 'k' ? 10 : *p == 'M' || *p == 'm' ? 20 : *p == 'G' || *p == 'g' ? 30 : 0;
    if (shift)
        p++;
    if (*p)
        return -1;
    return v << shift;
}

/* $CC as words; NULL-terminated, the words in one allocation after the pointers. */
static char **split_words(const char *s)
{
    size_t len = strlen(s), n = 0;
    char **w = malloc((len / 2 + 2) * sizeof *w + len + 1);
    if (!w)
        return NULL;
    char *copy = (char *)(w + len / 2 + 2);
    memcpy(copy, s, len + 1);
    for (char *p = copy; *p;) {
        while (*p == ' ' || *p == '\t')
            *p++ = 0;
        if (!*p)
            break;
        w[n++] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    w[n] = NULL;
    return w;
}

/* ---------------------------------------------------------------------------------------- */
/* child processes */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int is_cancelled(kg_cc_abort *ab) { return ab && __atomic_load_n(&ab->cancelled, __ATOMIC_ACQUIRE); }

/* Runs path with argv, stdin from /dev/null, stdout and stderr to out_fd (or to log, created),
   in a process group of its own with default signal handling, and waits. ab (may be NULL)
   lets kg_tier_release signal the group meanwhile. Returns 0 and *status (exit code, 128+N
   for signal N), or -1 and *why. */
static int run(const char *path, char *const argv[], int out_fd, const char *log, kg_cc_abort *ab, int *status,
               char **why)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return *why = kg_strdup("out of memory"), -1;
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return *why = kg_strdup("out of memory"), -1;
    }
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&dfl, sigs[i]);
    int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc)
        rc = out_fd >= 0 ? posix_spawn_file_actions_adddup2(&fa, out_fd, 1)
                         : posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (!rc)
        rc = out_fd >= 0 ? posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0)
                         : posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (!rc)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(&attr, &dfl);
    pid_t pid = 0;
    if (ab)
        pthread_mutex_lock(&ab->mu);
    if (!rc && is_cancelled(ab))
        rc = ECANCELED;
    if (!rc && (rc = posix_spawn(&pid, path, &fa, &attr, argv, environ)) == 0 && ab)
        ab->child = pid;
    if (ab)
        pthread_mutex_unlock(&ab->mu);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc) {
        *why = rc == ECANCELED ? kg_strdup("cancelled") : kg_strdupf("cannot run %s: %s", path, strerror(rc));
        return -1;
    }
    /* Wait without reaping first: until it is reaped the pid (and its group) cannot be reused,
       so kg_tier_release may signal it up to the moment ab->child is cleared. */
    siginfo_t info;
    int e = 0;
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) != 0)
        if ((e = errno) != EINTR)
            break;
    if (ab) {
        pthread_mutex_lock(&ab->mu);
        ab->child = 0;
        pthread_mutex_unlock(&ab->mu);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (e && e != EINTR) { /* ECHILD: the host ignores SIGCHLD, children are reaped unseen */
        *why = kg_strdupf("cannot wait for %s: %s", path, strerror(e));
        return -1;
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
    return 0;
}

/* Compiler slots: at most one compiler per online CPU at once in this process. */
static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static int slots_busy;

static int acquire_slot(kg_cc_abort *ab)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int max = ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu, ok;
    pthread_mutex_lock(&slot_mu);
    while (slots_busy >= max && !is_cancelled(ab))
        pthread_cond_wait(&slot_cv, &slot_mu);
    if ((ok = !is_cancelled(ab)))
        slots_busy++;
    pthread_mutex_unlock(&slot_mu);
    return ok ? 0 : -1;
}

static void release_slot(void)
{
    pthread_mutex_lock(&slot_mu);
    slots_busy--;
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
}

void kg_cc_wake(void)
{
    pthread_mutex_lock(&slot_mu);
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
}

/* ---------------------------------------------------------------------------------------- */
/* the compiler's identity */

/* The executable a word names, as execvp would find it (PATH, default /usr/bin:/bin); NULL with
   errno ENOMEM when memory ran out, 0 when there is none. */
static char *find_program(const char *word, const char *path)
{
    if (strchr(word, '/')) {
        if (access(word, X_OK) != 0) {
            errno = 0;
            return NULL;
        }
        char *copy = kg_strdup(word);
        errno = copy ? 0 : ENOMEM;
        return copy;
    }
    if (!path)
        path = "/usr/bin:/bin";
    for (const char *p = path;;) {
        size_t n = strcspn(p, ":");
        char *full = kg_strdupf("%.*s/%s", n ? (int)n : 1, n ? p : ".", word);
        if (!full) {
            errno = ENOMEM;
            return NULL;
        }
        struct stat sb;
        if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && access(full, X_OK) == 0)
            return full;
        free(full);
        if (!p[n]) {
            errno = 0;
            return NULL;
        }
        p += n + 1;
    }
}

/* `$CC --version`'s first line is run once per process and compiler file. */
static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char *cc, *version;
    dev_t dev;
    ino_t ino;
    off_t size;
    long long mtime_ns;
} id_memo;

static char *version_line(const char *path, char **words, char **why)
{
    size_t n = 0;
    while (words[n])
        n++;
    char **argv = calloc(n + 2, sizeof *argv);
    int fds[2];
    if (!argv || pipe2(fds, O_CLOEXEC) != 0) {
        free(argv);
        *why = kg_strdupf("cannot run %s: %s", words[0], argv ? strerror(errno) : "out of memory");
        return NULL;
    }
    memcpy(argv, words, n * sizeof *argv);
    argv[n] = "--version";
    char out[512];
    size_t got = 0;
    int status = -1;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (!rc) {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
    }
    close(fds[1]);
    if (!rc) { /* read everything (a child blocked on a full pipe would never exit), keep the start */
        char chunk[512];
        ssize_t r;
        while ((r = read(fds[0], chunk, sizeof chunk)) > 0 || (r < 0 && errno == EINTR)) {
            size_t take = r > 0 && got < sizeof out - 1 ? sizeof out - 1 - got : 0;
            if (take > (size_t)r)
                take = (size_t)r;
            memcpy(out + got, chunk, take);
            got += take;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    }
    close(fds[0]);
    free(argv);
    out[got] = 0;
    out[strcspn(out, "\r\n")] = 0;
    if (rc) {
        *why = kg_strdupf("cannot run the C compiler %s: %s", path, strerror(rc));
        return NULL;
    }
    if (status != 0 || !out[0]) {
        *why = kg_strdupf("the C compiler %s does not run: `%s --version` %s", path, words[0],
                          status ? "failed" : "printed nothing");
        return NULL;
    }
    char *v = kg_strdup(out);
    if (!v)
        *why = kg_strdup("out of memory");
    return v;
}

/* Resolves the compiler: *path (malloc'd) and *ident (what the key hashes). -1 and *why. */
static int compiler_identity(const char *cc, const char *search, char **words, char **path, char **ident, char **why)
{
    *path = *ident = NULL;
    if (!words[0]) {
        *why = kg_strdup("CC names no compiler");
        return -1;
    }
    struct stat sb;
    errno = 0;
    if (!(*path = find_program(words[0], search)) && errno == ENOMEM) {
        *why = kg_strdup("out of memory");
        return -1;
    }
    if (!*path || stat(*path, &sb) != 0) {
        *why = strchr(words[0], '/') ? kg_strdupf("no C compiler: %s does not exist or is not executable (CC)", words[0])
                                     : kg_strdupf("no C compiler: '%s' is not on PATH (set CC)", words[0]);
        free(*path);
        *path = NULL;
        return -1;
    }
    long long mtime_ns = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    char *version = NULL;
    pthread_mutex_lock(&id_mu);
    int known = id_memo.cc && strcmp(id_memo.cc, cc) == 0 && id_memo.dev == sb.st_dev && id_memo.ino == sb.st_ino &&
                id_memo.size == sb.st_size && id_memo.mtime_ns == mtime_ns;
    if (known)
        version = kg_strdup(id_memo.version);
    pthread_mutex_unlock(&id_mu);
    if (known && !version) {
        free(*path);
        *path = NULL;
        *why = kg_strdup("out of memory");
        return -1;
    }
    if (!version) {
        if (!(version = version_line(*path, words, why))) {
            free(*path);
            *path = NULL;
            return -1;
        }
        char *c = kg_strdup(cc), *v = kg_strdup(version);
        pthread_mutex_lock(&id_mu);
        if (c && v) {
            free(id_memo.cc);
            free(id_memo.version);
            id_memo.cc = c, id_memo.version = v, c = v = NULL;
            id_memo.dev = sb.st_dev, id_memo.ino = sb.st_ino, id_memo.size = sb.st_size, id_memo.mtime_ns = mtime_ns;
        }
        pthread_mutex_unlock(&id_mu);
        free(c);
        free(v);
    }
    *ident = kg_strdupf("%s\n%llu %llu %lld %lld\n%s", *path, (unsigned long long)sb.st_dev,
                        (unsigned long long)sb.st_ino, (long long)sb.st_size, mtime_ns, version);
    free(version);
    if (!*ident) {
        free(*path);
        *path = NULL;
        *why = kg_strdup("out of memory");
        return -1;
    }
    return 0;
}

/* The CPU as -march=native sees it: the first processor's model and feature lines. */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static unsigned char cpu_digest[32];

static void read_cpu(void)
{
    static const char *const keys[] = {"vendor_id", "cpu family", "model", "model name", "stepping", "flags",
                                       "Features", "CPU implementer", "CPU architecture", "CPU variant",
                                       "CPU part", "CPU revision", "isa", "uarch", "cpu model"};
    sha256 s;
    sha_init(&s);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    while (f && fgets(line, sizeof line, f) && line[0] != '\n')
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            size_t n = strlen(keys[i]);
            if (strncmp(line, keys[i], n) == 0 && (line[n] == '\t' || line[n] == ' ' || line[n] == ':'))
                sha_str(&s, line);
        }
    if (f)
        fclose(f);
    sha_final(&s, cpu_digest);
}

/* ---------------------------------------------------------------------------------------- */
/* the cache directory and its entries */

/* Creates dir (one level, 0700) when missing, then checks that it may hold code we load. */
static int use_dir(const char *dir, const char *parent, char **why)
{
    if (parent && mkdir(parent, 0700) != 0 && errno != EEXIST) {
        *why = kg_strdupf("cache directory %s: cannot create: %s", parent, strerror(errno));
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *why = kg_strdupf("cache directory %s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    struct stat sb;
    const char *problem = NULL;
    char detail[96] = "";
    if (lstat(dir, &sb) != 0)
        problem = strerror(errno);
    else if (S_ISLNK(sb.st_mode))
        problem = "is a symbolic link (refused)";
    else if (!S_ISDIR(sb.st_mode))
        problem = "is not a directory";
    else if (sb.st_uid != geteuid()) {
        snprintf(detail, sizeof detail, "owned by uid %u, not by you (uid %u): refused", (unsigned)sb.st_uid,
                 (unsigned)geteuid());
        problem = detail;
    } else if (sb.st_mode & 022) {
        snprintf(detail, sizeof detail, "writable by group or others (mode %04o): refused (chmod 700 it)",
                 (unsigned)(sb.st_mode & 07777));
        problem = detail;
    } else if (access(dir, W_OK | X_OK) != 0)
        problem = "not writable";
    if (problem) {
        *why = kg_strdupf("cache directory %s: %s", dir, problem);
        return -1;
    }
    return 0;
}

static int is_entry_name(const char *name)
{
    size_t i = 0;
    for (; i < 64; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return 0;
    return strcmp(name + 64, ".so") == 0;
}

enum { ENTRY_OK, ENTRY_ABSENT, ENTRY_BAD, ENTRY_UNREADABLE, ENTRY_ERROR };

/* Checks path's trailer and checksum against key without loading it. ENTRY_BAD: *why says
   what is wrong with it (remove it); ENTRY_UNREADABLE: *why says why it could not be read
   (too many open files, say: keep it); ENTRY_ERROR: out of memory (keep it). */
static int check_entry(const char *path, const unsigned char key[32], char **why)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return ENTRY_ABSENT;
        if (e == ELOOP) { /* O_NOFOLLOW met a symbolic link */
            *why = kg_strdup("a symbolic link");
            return ENTRY_BAD;
        }
        *why = kg_strdupf("%s: cannot open it: %s", path, strerror(e));
        return ENTRY_UNREADABLE;
    }
    struct stat sb;
    unsigned char *buf = NULL;
    int rc = ENTRY_BAD;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
        *why = kg_strdup("not a regular file of yours");
    else if (sb.st_size < TRAILER || sb.st_size > (1LL << 30))
        *why = kg_strdupf("truncated (%lld bytes)", (long long)sb.st_size);
    else if (!(buf = malloc((size_t)sb.st_size)))
        rc = ENTRY_ERROR;
    else {
        size_t n = (size_t)sb.st_size, got = 0;
        while (got < n) {
            ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        const unsigned char *t = buf + n - TRAILER;
        if (got != n)
            *why = kg_strdupf("%s: cannot read it", path), rc = ENTRY_UNREADABLE;
        else if (memcmp(t, MAGIC, 8) != 0 || memcmp(t + 56, END, 8) != 0)
            *why = kg_strdupf("truncated or not an entry (%zu bytes, no trailer)", n);
        else if (get64(t + 8) != n - TRAILER)
            *why = kg_strdupf("truncated (%zu bytes, the trailer says %llu)", n,
                              (unsigned long long)get64(t + 8) + TRAILER);
        else if (memcmp(t + 24, key, 32) != 0)
            *why = kg_strdup("made for another key");
        else if (checksum(buf, n - TRAILER) != get64(t + 16))
            *why = kg_strdup("corrupt (checksum mismatch)");
        else {
            rc = ENTRY_OK;
            futimens(fd, NULL); /* least recently used order */
        }
    }
    free(buf);
    close(fd);
    return rc;
}

/* Appends the trailer to the compiler's output. */
static int seal(const char *path, const unsigned char key[32])
{
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    unsigned char *buf = NULL, t[TRAILER];
    int ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && sb.st_size < (1LL << 30) &&
             (buf = malloc((size_t)sb.st_size));
    size_t n = ok ? (size_t)sb.st_size : 0, got = 0;
    while (ok && got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            ok = 0;
        else
            got += (size_t)r;
    }
    if (ok) {
        memcpy(t, MAGIC, 8);
        put64(t + 8, n);
        put64(t + 16, checksum(buf, n));
        memcpy(t + 24, key, 32);
        memcpy(t + 56, END, 8);
        ok = pwrite(fd, t, TRAILER, (off_t)n) == TRAILER;
    }
    free(buf);
    return close(fd) == 0 && ok ? 0 : -1;
}

/* Loads a checked entry and finds every pass's entry point; -1 and *why when it does not load. */
static int load(const kg_kernel *k, const char *path, void **dl, int (*entry[KG_NPASSES])(void *const *), char **why)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        *why = kg_strdupf("dlopen failed: %s", e ? e : "?");
        return -1;
    }
    for (int p = 0; p < KG_NPASSES; p++) {
        entry[p] = NULL;
        if (!kg_has_pass(k, (kg_pass)p))
            continue;
        char name[64];
        snprintf(name, sizeof name, "kg_entry_%s", kg_pass_name((kg_pass)p));
        void *sym = dlsym(h, name);
        if (!sym) {
            dlclose(h);
            *why = kg_strdupf("it has no %s", name);
            return -1;
        }
        memcpy(&entry[p], &sym, sizeof sym); /* ISO C has no object-to-function pointer cast */
    }
    *dl = h;
    return 0;
}

typedef struct {
    char *name;
    time_t mtime;
    long long size;
} dir_entry;

static int older_first(const void *a, const void *b)
{
    const dir_entry *x = a, *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Removes stale temporaries and, beyond max bytes of entries, the oldest entries but keep. */
static void evict(const char *dir, long long max, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    dir_entry *list = NULL;
    size_t n = 0, cap = 0;
    long long total = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        int temp = strncmp(e->d_name, ".tmp-", 5) == 0;
        if ((!temp && !is_entry_name(e->d_name)) || fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        if (temp) {
            if (now - sb.st_mtime > STALE_TEMP_S)
                unlinkat(dirfd(d), e->d_name, 0);
            continue;
        }
        total += (long long)sb.st_size;
        if (n == cap) {
            dir_entry *grown = realloc(list, (cap = cap ? 2 * cap : 64) * sizeof *list);
            if (!grown)
                break;
            list = grown;
        }
        if (!(list[n].name = kg_strdup(e->d_name)))
            break;
        list[n].mtime = sb.st_mtime;
        list[n++].size = (long long)sb.st_size;
    }
    if (!e && total > max) { /* (a listing cut short by memory evicts nothing) */
        qsort(list, n, sizeof *list, older_first);
        for (size_t i = 0; i < n && total > max / 10 * 8; i++)
            if (strcmp(list[i].name, keep) != 0 && unlinkat(dirfd(d), list[i].name, 0) == 0)
                total -= list[i].size;
    }
    for (size_t i = 0; i < n; i++)
        free(list[i].name);
    free(list);
    closedir(d);
}

/* A unique temporary base name in dir for key's compile. */
static char *temp_base(const char *dir, const char *hex)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&r ^ (uint64_t)now_ms(); /* still O_EXCL */
    return kg_strdupf("%s/.tmp-%.16s-%016llx", dir, hex, (unsigned long long)r);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return close(fd) == 0 && done == n ? 0 : -1;
}

/* The first LOG_SHOWN bytes of a compiler's log. */
static char *log_head(const char *path)
{
    char buf[LOG_SHOWN + 1];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, LOG_SHOWN) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return kg_strdup("(no output)");
    buf[n] = 0;
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = 0;
    return kg_strdupf("%s%s", buf, n == LOG_SHOWN ? "\n..." : "");
}

/* Compiles source into final: 0, or -1 and *why. */
static int compile_entry(const char *path, char **words, const char *dir, const char *hex, const unsigned char key[32],
                         const char *source, const char *final, kg_cc_abort *ab, char **why)
{
    char *base = temp_base(dir, hex);
    char *src = base ? kg_strdupf("%s.c", base) : NULL, *out = base ? kg_strdupf("%s.so", base) : NULL,
         *log = base ? kg_strdupf("%s.log", base) : NULL;
    size_t nw = 0;
    while (words[nw])
        nw++;
    char **argv = calloc(nw + NFLAGS + 5, sizeof *argv);
    int rc = -1, status = -1;
    if (!base || !src || !out || !log || !argv) {
        *why = kg_strdup("out of memory");
        goto done;
    }
    size_t a = 0;
    for (size_t i = 0; i < nw; i++)
        argv[a++] = words[i];
    for (size_t i = 0; i < NFLAGS; i++)
        argv[a++] = (char *)CC_FLAGS[i];
    argv[a++] = "-o", argv[a++] = out, argv[a++] = src, argv[a++] = "-lm";
    if (write_file(src, source) != 0) {
        *why = kg_strdupf("%s: cannot write: %s", src, strerror(errno));
        goto done;
    }
    if (acquire_slot(ab) != 0) {
        *why = kg_strdup("cancelled");
        goto done;
    }
    int ran = run(path, argv, -1, log, ab, &status, why);
    release_slot();
    if (ran != 0)
        goto done;
    if (status != 0) {
        char *head = is_cancelled(ab) ? NULL : log_head(log);
        *why = is_cancelled(ab) ? kg_strdup("cancelled")
                                : kg_strdupf("%s failed (exit status %d):\n%s", words[0], status, head ? head : "");
        free(head);
        goto done;
    }
    if (seal(out, key) != 0 || rename(out, final) != 0) {
        *why = kg_strdupf("%s: cannot put the compiled kernel in place: %s", final, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (src)
        unlink(src);
    if (log)
        unlink(log);
    if (out && rc != 0)
        unlink(out);
    free(argv);
    free(base);
    free(src);
    free(out);
    free(log);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */

kg_status kg_cc_build(const kg_kernel *k, const char *source, const kg_cc_env *env, kg_cc_abort *ab, void **dl,
                      int (*entry[KG_NPASSES])(void *const *), char **note)
{
    *dl = NULL;
    *note = NULL;
    char **words = env->cc ? split_words(env->cc) : NULL, *path = NULL, *ident = NULL, *why = NULL;
    char *file = NULL, *old_problem = NULL;
    kg_status st = KG_EINPUT;
    long long max = parse_size(env->max);
    if (!words) {
        st = KG_ENOMEM;
        goto done;
    }
    if (compiler_identity(env->cc, env->path, words, &path, &ident, &why) != 0)
        goto done;
    if (!env->dir) {
        why = env->dir_problem ? kg_strdup(env->dir_problem) : NULL;
        goto done;
    }
    if (max < 0) {
        why = kg_strdupf("KERNGEN_CACHE_MAX='%s': expected a size such as 512M, 100K or 1G", env->max);
        goto done;
    }
    if (use_dir(env->dir, env->parent, &why) != 0)
        goto done;

    pthread_once(&cpu_once, read_cpu);
    sha256 s;
    unsigned char key[32];
    sha_init(&s);
    sha_str(&s, FORMAT);
    sha_str(&s, ident);
    for (size_t i = 1; words[i]; i++)
        sha_str(&s, words[i]);
    for (size_t i = 0; i < NFLAGS; i++)
        sha_str(&s, CC_FLAGS[i]);
    sha_update(&s, cpu_digest, sizeof cpu_digest);
    sha_str(&s, source);
    sha_final(&s, key);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    if (!(file = kg_strdupf("%s/%s.so", env->dir, hex))) {
        st = KG_ENOMEM;
        goto done;
    }

    int state = check_entry(file, key, &old_problem);
    if (state == ENTRY_OK) { /* a whole entry: if it does not load (memory), keep it */
        if (load(k, file, dl, entry, &why) == 0) {
            *note = kg_strdupf("cc tier: cache hit, %s", file);
            st = KG_OK;
        }
        goto done;
    }
    if (state == ENTRY_ERROR) {
        st = KG_ENOMEM;
        goto done;
    }
    if (state == ENTRY_UNREADABLE) {
        why = old_problem, old_problem = NULL;
        goto done;
    }
    if (state == ENTRY_BAD)
        unlink(file);
    if (is_cancelled(ab)) {
        why = kg_strdup("cancelled");
        goto done;
    }
    double t0 = now_ms();
    if (compile_entry(path, words, env->dir, hex, key, source, file, ab, &why) != 0)
        goto done;
    double ms = now_ms() - t0;
    char keep[70];
    snprintf(keep, sizeof keep, "%s.so", hex);
    evict(env->dir, max, keep);
    char *problem = NULL;
    state = check_entry(file, key, &problem);
    if (state == ENTRY_OK && load(k, file, dl, entry, &problem) == 0) {
        st = KG_OK;
        *note = old_problem ? kg_strdupf("cc tier: compiled by %s in %.0f ms (the cache entry was %s; replaced), %s",
                                         words[0], ms, old_problem, file)
                            : kg_strdupf("cc tier: compiled by %s in %.0f ms (cache miss), cached as %s", words[0],
                                         ms, file);
    } else if (state == ENTRY_ERROR) {
        st = KG_ENOMEM;
    } else if (state == ENTRY_UNREADABLE) {
        why = problem, problem = NULL;
    } else {
        why = kg_strdupf("%s: the new cache entry does not load: %s", file, problem ? problem : "removed meanwhile");
    }
    free(problem);
done:
    if (st != KG_OK && st != KG_ENOMEM && !why)
        st = KG_ENOMEM;
    if (st == KG_ENOMEM) {
        free(why);
        why = NULL;
    }
    if (st != KG_OK)
        *note = why ? why : kg_strdup("out of memory");
    else
        free(why);
    free(old_problem);
    free(file);
    free(ident);
    free(path);
    free(words);
    return st;
}

kg_status kg_cc_status(char **note)
{
    *note = NULL;
    kg_cc_env env;
    if (kg_cc_env_capture(&env) != 0)
        return KG_ENOMEM;
    char **words = split_words(env.cc), *path = NULL, *ident = NULL, *why = NULL;
    kg_status st = KG_EINPUT;
    if (!words)
        st = KG_ENOMEM;
    else if (compiler_identity(env.cc, env.path, words, &path, &ident, &why) == 0 && env.dir &&
             parse_size(env.max) >= 0 && use_dir(env.dir, env.parent, &why) == 0) {
        st = KG_OK;
        const char *version = strrchr(ident, '\n') + 1;
        why = kg_strdupf("cc tier ready: %s (%s, %s), cache %s (at most %s)", words[0], path, version, env.dir,
                         env.max ? env.max : DEFAULT_MAX);
    } else if (!why && !env.dir && env.dir_problem) {
        why = kg_strdup(env.dir_problem);
    } else if (!why && parse_size(env.max) < 0) {
        why = kg_strdupf("KERNGEN_CACHE_MAX='%s': expected a size such as 512M, 100K or 1G", env.max);
    }
    if (!why)
        st = KG_ENOMEM;
    *note = why;
    free(words);
    free(path);
    free(ident);
    kg_cc_env_free(&env);
    return st;
}
