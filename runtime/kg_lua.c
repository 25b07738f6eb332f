/* kg_lua: the Lua 5.4 host. A request runs in a lua_State of its own (one thread at a time;
 * its passes may run in several, a thread each: "a request's passes in parallel" below), with
 * only base, table, string, math, utf8, debug and a restricted package library; modules load
 * from the embedded sources (or from $KERNGEN_LUA_DIR for development). Everything after
 * lua_newstate runs inside one lua_pcall with a message handler (run_job): user errors (tables
 * from util.fail) become KG_EINPUT, a failed allocation KG_ENOMEM, anything else KG_EINTERNAL
 * with a traceback. Nothing here aborts: Lua's panic handler is never reached.
 *
 * Prepared states: loading the generator (its modules, and the built-in specs a request
 * needs) costs 1-1.5 ms, so a state that served a request for a built-in graph successfully
 * goes back to a small pool, and the next request starts from it. What persists is the
 * generator's own: its modules and their caches, and the built-in specs loaded so far (copies
 * made when each loaded, never changed afterwards). Spec code gets nothing that outlives its
 * call: fresh environments, handles, copies (README, "The sandbox"); a spec file given by path
 * runs in a state that is closed afterwards, and so does any request that failed. Developer
 * mode (files on disk that may change) does not pool.
 *
 * The generator gets a private module "kg_host" (never visible to specs) with:
 *   resource(path) / resources(prefix)  embedded files (resource also says whether the text is
 *       precompiled: the generator's modules and built-in specs are, gen/embed.c);
 *   graph_file(name)  the file of graphs/ that defines a built-in graph (nil in developer mode);
 *   read_file(path)  a user's spec
 *   sandbox_call(chunkname, instructions, milliseconds, bytes, fn, ...) -> ok, results... | false, message
 *       runs spec code under an instruction and wall-clock budget shared by every call of the
 *       request (count hook) and a memory cap (allocator)
 *   pattern  string.find/match/gmatch/gsub, which the state's string library does not have:
 *       a pattern can backtrack for hours inside one C call, where no hook fires, so spec code
 *       must not reach them (string methods on values use the same stripped table). */
#define _GNU_SOURCE /* sched_getaffinity, sched_getcpu, pthread_attr_setaffinity_np */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "kg_internal.h"

/* The hook runs every HOOK_STEP VM instructions: a C function reachable from specs runs in
   time linear in its input, so the time between two checks stays small. */
enum { HOOK_STEP = 100 };
static const size_t GENERATOR_MEMORY = (size_t)4 << 30; /* bound for the generator itself */
/* The generator's state collects when its heap has grown 4x since the last collection (Lua's
   default: 2x). With malloc, 10x had made generation faster (LayerNorm 8x64, three passes,
   first call 11.5 -> 10.5 ms); from the state's own heap (kg_heap.c), 4x and 10x take the same
   time (that request, seq_ffn's and groupnorm's passes, warm) and 4x holds half the memory (a
   process that made 600 requests of 7 graphs: 25 MB resident against 50). The caps stand: an
   allocation they refuse makes Lua collect and try again. Spec code runs with the default, so
   that its memory budget counts about what it did. */
#define GENERATOR_GC_PAUSE 400
#define SPEC_GC_PAUSE 200
enum { SPEC_FILE_MAX = 1 << 20 }; /* Lua's parser runs unseen by the hook: 66 MB of labels took 36 s */
#define PATTERN_KEY "kerngen.pattern"

typedef struct {
    size_t used, limit;
    lua_State *L;
    int sandboxed;
    int budget_set;      /* the spec budget is per request: set on the first sandboxed call */
    size_t spec_bytes;   /* memory the request's sandboxed calls grew the heap by, together */
    size_t spec_chunks;  /* and the bytes of chunks they added to it */
    long steps_left;     /* instruction budget in units of HOOK_STEP */
    double deadline;     /* CLOCK_MONOTONIC seconds */
    long time_ms;        /* the time budget, for the message */
    const char *chunk;   /* the spec file being run, while sandboxed (a Lua string on the stack) */
    int refused_line;    /* the spec's line where the memory cap refused an allocation, or 0 */
    const char *dir;     /* developer override, or NULL */
    unsigned failed;     /* allocations that failed for want of memory (not the spec's cap) */
    kg_heap heap;        /* blocks up to KG_HEAP_BLOCK_MAX; larger ones from malloc */
} host;

/* ---------------------------------------------------------------------------------------- */
/* small helpers (shared with the rest of the runtime): NULL when memory runs out */

char *kg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    return p ? memcpy(p, s, n) : NULL;
}

char *kg_strdupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---------------------------------------------------------------------------------------- */
/* allocator with a cap, and the instruction-count hook */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The line of the innermost frame of the spec being run (0 if none): reading the call stack
   allocates nothing, so the allocator may do it. */
static int spec_line(host *h)
{
    lua_Debug ar;
    for (int level = 0; h->chunk && lua_getstack(h->L, level, &ar); level++)
        if (lua_getinfo(h->L, "Sl", &ar) && ar.source[0] == '@' && strcmp(ar.source + 1, h->chunk) == 0 &&
            ar.currentline > 0)
            return ar.currentline;
    return 0;
}

/* The states' allocator: a state is used by one thread at a time, and Lua gives a block's size
   when it frees or resizes it, so blocks come from the state's own kg_heap (no header), larger
   ones from malloc. Against malloc for every block: a process's first request (LayerNorm 8x64
   forward) 5.5 -> 2.9 ms on a paravirtualized VM (the fresh pages, kg_heap.c), prenorm_ffn's
   five passes 43 -> 24 ms; and passes generated side by side no longer run 2-2.5x slower each
   (pooled states move between threads, and freeing their blocks into another thread's malloc
   arena was the cost). A process that made 600 requests of 7 graphs holds 25 MB resident (with
   malloc and the 10x pause of GENERATOR_GC_PAUSE then, 38; from the heap at 10x, 50). */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    host *h = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        if (old > KG_HEAP_BLOCK_MAX)
            free(ptr);
        else if (ptr)
            kg_heap_free(&h->heap, ptr, old);
        h->used -= old;
        return NULL;
    }
    if (nsize > old && h->used - old + nsize > h->limit) {
        if (h->sandboxed && !h->refused_line)
            h->refused_line = spec_line(h);
        return NULL;
    }
    void *p;
    const size_t max = KG_HEAP_BLOCK_MAX;
    h->heap.capped = 0;
    if (ptr && old > max && nsize > max) {
        p = realloc(ptr, nsize);
    } else if (ptr && old <= max && nsize <= max && kg_heap_same_block(old, nsize)) {
        p = ptr;
    } else {
        p = nsize > max ? malloc(nsize) : kg_heap_alloc(&h->heap, nsize);
        if (p && ptr) {
            memcpy(p, ptr, old < nsize ? old : nsize);
            if (old > max)
                free(ptr);
            else
                kg_heap_free(&h->heap, ptr, old);
        }
    }
    if (!p && ptr && nsize <= old) /* Lua's contract: shrinking never fails. The block stays; freed
        later as one of nsize bytes, it serves that class (one from malloc is then never returned:
        only when memory has run out) */
        p = ptr;
    if (p)
        h->used = h->used - old + nsize;
    else if (h->heap.capped && !h->refused_line) /* the spec's chunks (l_sandbox_call) */
        h->refused_line = spec_line(h);
    else if (!h->heap.capped)
        h->failed++;
    return p;
}

static host *host_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

/* A C allocation of the host failed: raise an error that run_job reports as KG_ENOMEM. */
static int out_of_memory(lua_State *L)
{
    host_of(L)->failed++;
    return luaL_error(L, "out of memory");
}

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    host *h = host_of(L);
    if (!h->sandboxed)
        return;
    const char *why = NULL;
    if (--h->steps_left < 0)
        why = "instruction budget exceeded (endless loop?)";
    else if (now_s() > h->deadline)
        why = "time budget exceeded";
    if (why) {
        int line = spec_line(h);
        if (line)
            luaL_error(L, "%s:%d: %s (spec code may run %d ms per request)", h->chunk, line, why, (int)h->time_ms);
        luaL_error(L, "%s (spec code may run %d ms per request)", why, (int)h->time_ms);
    }
}

/* sandbox_call(chunkname, instructions, ms, bytes, fn, ...): pcall under limits. The
   instruction and time budgets are shared by every call of the request, and so is the memory
   cap: each outer call may grow the heap by what the calls before it left of `bytes` (what a
   call leaves grown counts, whether the spec still holds it or not yet collected garbage: a
   spec that kept 64 MiB in upvalues per call once held 1.5 GB over one request), and add
   chunks to it (kg_heap.c) up to twice `bytes` and one over the request (a block freed serves
   only its class: 20 MiB held in one size after another grew a process to 445 MB). Nested calls
   share the outer call's cap. */
static int l_sandbox_call(lua_State *L)
{
    host *h = host_of(L);
    luaL_checkstring(L, 1);
    lua_Integer budget = luaL_checkinteger(L, 2);
    lua_Integer ms = luaL_checkinteger(L, 3);
    lua_Integer bytes = luaL_checkinteger(L, 4);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    int outer = !h->sandboxed;
    size_t old_limit = h->limit;
    const char *old_chunk = h->chunk;
    h->chunk = lua_tostring(L, 1); /* anchored on this frame's stack while the call runs */
    if (!h->budget_set) {
        h->budget_set = 1;
        h->spec_bytes = h->spec_chunks = 0;
        h->steps_left = (long)(budget / HOOK_STEP);
        h->deadline = now_s() + 1e-3 * (double)ms;
        h->time_ms = (long)ms;
    }
    size_t start = h->used, start_chunks = h->heap.bytes;
    if (outer) {
        h->sandboxed = 1;
        h->refused_line = 0;
        h->limit = h->used + ((size_t)bytes > h->spec_bytes ? (size_t)bytes - h->spec_bytes : 0);
        size_t chunks = 2 * (size_t)bytes + KG_HEAP_CHUNK; /* room for blocks of several classes */
        h->heap.cap = h->heap.bytes + (chunks > h->spec_chunks ? chunks - h->spec_chunks : 0);
        lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
        lua_gc(L, LUA_GCINC, SPEC_GC_PAUSE, 0, 0);
    }
    int nargs = lua_gettop(L) - 5;
    unsigned failed = h->failed;
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0); /* stack: chunk, budgets..., results... | err */
    if (rc == LUA_ERRMEM && h->failed != failed) { /* the machine's memory, not the cap */
        h->chunk = old_chunk;
        if (outer) {
            lua_gc(L, LUA_GCINC, GENERATOR_GC_PAUSE, 0, 0);
            lua_sethook(L, NULL, 0, 0);
            h->sandboxed = 0;
            h->limit = old_limit;
            h->heap.cap = SIZE_MAX;
        }
        return lua_error(L);
    }
    h->chunk = old_chunk;
    int line = h->refused_line;
    if (outer) {
        lua_gc(L, LUA_GCINC, GENERATOR_GC_PAUSE, 0, 0);
        lua_sethook(L, NULL, 0, 0);
        h->sandboxed = 0;
        h->limit = old_limit;
        h->heap.cap = SIZE_MAX;
        if (h->used > start)
            h->spec_bytes += h->used - start;
        h->spec_chunks += h->heap.bytes - start_chunks;
    }
    if (rc != LUA_OK) {
        if (rc == LUA_ERRMEM) {
            lua_pop(L, 1);
            if (line)
                lua_pushfstring(L, "%s:%d: memory limit exceeded (%d MiB per request)", lua_tostring(L, 1), line,
                                (int)(bytes >> 20));
            else
                lua_pushfstring(L, "memory limit exceeded (%d MiB per request)", (int)(bytes >> 20));
        }
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_replace(L, 1); /* stack: true, budgets..., results... */
    lua_rotate(L, 2, -3);
    lua_pop(L, 3);
    return lua_gettop(L);
}

/* ---------------------------------------------------------------------------------------- */
/* resources */

/* A whole regular file of at most SPEC_FILE_MAX bytes (malloc'd), or NULL and a message in
   err. FIFOs and devices are refused before reading (they could block forever or never end). */
static char *read_whole(const char *path, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    char *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
    } else if (sb.st_size > SPEC_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d MiB", path, SPEC_FILE_MAX >> 20);
    } else if (!(buf = malloc((size_t)sb.st_size + 1))) {
        snprintf(err, errlen, "out of memory");
    } else {
        ssize_t got = 0;
        while (n <= (size_t)sb.st_size && (got = read(fd, buf + n, (size_t)sb.st_size + 1 - n)) > 0)
            n += (size_t)got;
        if (got < 0 || n > (size_t)sb.st_size) { /* an error, or the file grew while we read */
            snprintf(err, errlen, "%s: read error", path);
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    *len = n;
    return buf;
}

static int push_lstring(lua_State *L)
{
    lua_pushlstring(L, lua_touserdata(L, 1), (size_t)lua_tointeger(L, 2));
    return 1;
}

/* pushes the text of path, or nil and a message; returns the number of values pushed */
static int push_file(lua_State *L, const char *path)
{
    char err[512];
    size_t len;
    char *text = read_whole(path, &len, err, sizeof err);
    if (!text) {
        if (strcmp(err, "out of memory") == 0)
            out_of_memory(L);
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* pushing copies text, and may fail: do it protected so that text is freed either way */
    lua_pushcfunction(L, push_lstring);
    lua_pushlightuserdata(L, text);
    lua_pushinteger(L, (lua_Integer)len);
    int rc = lua_pcall(L, 2, 1, 0);
    free(text);
    if (rc != LUA_OK)
        return lua_error(L);
    return 1;
}

static const kg_embedded_file *embedded(const char *path)
{
    for (size_t i = 0; i < kg_embedded_count; i++)
        if (strcmp(kg_embedded[i].path, path) == 0)
            return &kg_embedded[i];
    return NULL;
}

static int l_resource(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    host *h = host_of(L);
    if (h->dir) {
        lua_pushfstring(L, "%s/%s", h->dir, path);
        return push_file(L, lua_tostring(L, -1));
    }
    const kg_embedded_file *f = embedded(path);
    if (f) {
        lua_pushlstring(L, f->text, f->len);
        lua_pushboolean(L, f->len >= 4 && memcmp(f->text, LUA_SIGNATURE, 4) == 0);
        return 2;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "%s: no such resource", path);
    return 2;
}

static int l_graph_file(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (!host_of(L)->dir) /* developer mode: graphs/ on disk may differ from the index */
        for (size_t i = 0; i < kg_graph_index_count; i++)
            if (strcmp(kg_graph_index[i].name, name) == 0) {
                lua_pushstring(L, kg_graph_index[i].path);
                return 1;
            }
    lua_pushnil(L);
    return 1;
}

/* resources(prefix) -> sorted list of paths (sorted in Lua by the caller's order: we sort here) */
static int l_resources(lua_State *L)
{
    const char *prefix = luaL_checkstring(L, 1); /* e.g. "graphs/" */
    host *h = host_of(L);
    lua_newtable(L);
    int n = 0;
    if (h->dir) { /* developer mode (an allocation failure here may leak the DIR) */
        DIR *d = opendir(lua_pushfstring(L, "%s/%s", h->dir, prefix));
        lua_pop(L, 1);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                lua_pushfstring(L, "%s%s", prefix, e->d_name);
                lua_rawseti(L, -2, ++n);
            }
            closedir(d);
        }
    } else {
        size_t plen = strlen(prefix);
        for (size_t i = 0; i < kg_embedded_count; i++) {
            if (strncmp(kg_embedded[i].path, prefix, plen) == 0) {
                lua_pushstring(L, kg_embedded[i].path);
                lua_rawseti(L, -2, ++n);
            }
        }
    }
    /* stack: list; sort with table.sort */
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

static int l_read_file(lua_State *L) { return push_file(L, luaL_checkstring(L, 1)); }

/* package searcher: require("ir") loads gen/ir.lua */
static int l_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *chunk = lua_pushfstring(L, "@gen/%s.lua", name);
    /* the generator's own modules: embedded precompiled (gen/embed.c) and loaded from there,
       not through a copy (its fresh pages were 5% of a new process's first request); text
       from disk in developer mode */
    const char *text = NULL;
    size_t len = 0;
    if (host_of(L)->dir) {
        lua_pushcfunction(L, l_resource);
        lua_pushstring(L, chunk + 1);
        lua_call(L, 1, 2); /* stack: name, chunk, text|nil, err */
        text = lua_tolstring(L, -2, &len);
        if (!text)
            return 1; /* its message (Lua puts "\n\t" before each searcher's) */
    } else {
        const kg_embedded_file *f = embedded(chunk + 1);
        if (!f) {
            lua_pushfstring(L, "no embedded module gen/%s.lua", name);
            return 1;
        }
        text = f->text, len = f->len;
    }
    if (luaL_loadbufferx(L, text, len, chunk, "bt") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, chunk + 1);
    return 2;
}

static int open_host(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"resource", l_resource},         {"resources", l_resources},       {"graph_file", l_graph_file},
        {"read_file", l_read_file},       {"sandbox_call", l_sandbox_call},
        {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushstring(L, KG_VERSION);
    lua_setfield(L, -2, "version");
    lua_getfield(L, LUA_REGISTRYINDEX, PATTERN_KEY);
    lua_setfield(L, -2, "pattern");
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* state setup */

/* The libraries and the generator's package setup (runs protected, in the job). */
static void open_libraries(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_DBLIBNAME, luaopen_debug},
        {LUA_LOADLIBNAME, luaopen_package}, {NULL, NULL}};
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* The string table is also what string values index (their metatable), so specs reach
       it with ("x"):f(): strip it to what specs may call. The pattern functions move to the
       registry for the generator (kg_host.pattern); no bytecode dumping, no binary packing. */
    lua_getglobal(L, "string");
    lua_newtable(L); /* stack: string, patterns */
    static const char *const moved[] = {"find", "match", "gmatch", "gsub"};
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, -2, moved[i]);
        lua_setfield(L, -2, moved[i]);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, PATTERN_KEY);
    static const char *const removed[] = {"find", "match", "gmatch", "gsub", "dump", "pack", "unpack", "packsize"};
    for (int i = 0; i < 8; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, removed[i]);
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) { /* stack: "", mt */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    /* package: the preload searcher (for kg_host) and ours; no file system paths */
    lua_getglobal(L, "package");
    lua_newtable(L);                  /* stack: package, new */
    lua_getfield(L, -2, "searchers"); /* stack: package, new, old */
    lua_rawgeti(L, -1, 1);
    lua_rawseti(L, -3, 1);
    lua_pop(L, 1);
    lua_pushcfunction(L, l_searcher);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "searchers");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadlib");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_host);
    lua_setfield(L, -2, "kg_host");
    lua_pop(L, 2);
}

static void set_str(lua_State *L, const char *key, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, key);
    }
}

/* req.consts as a list of { name = NAME, values = { number... } } (kg_generate checked the
   array); f32 values convert to double exactly. Without a valid dtype no values are pushed:
   the generator reports the dtype first. */
static void push_consts(lua_State *L, const kg_request *req)
{
    int f64 = req->dtype && strcmp(req->dtype, "f64") == 0;
    int known = f64 || !req->dtype || strcmp(req->dtype, "f32") == 0;
    if (req->nconsts <= 0)
        return;
    lua_createtable(L, req->nconsts, 0); /* stack: request, consts */
    for (int i = 0; i < req->nconsts; i++) {
        const kg_const *c = &req->consts[i];
        size_t n = known ? c->count : 0;
        lua_createtable(L, 0, 2); /* stack: request, consts, const */
        set_str(L, "name", c->name);
        lua_createtable(L, (int)n, 0); /* stack: request, consts, const, values */
        for (size_t j = 0; j < n; j++) {
            lua_pushnumber(L, f64 ? ((const double *)c->data)[j] : (double)((const float *)c->data)[j]);
            lua_rawseti(L, -2, (lua_Integer)j + 1);
        }
        lua_setfield(L, -2, "values");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "consts");
}

static void push_request(lua_State *L, const kg_request *req)
{
    lua_newtable(L);
    set_str(L, "graph", req->graph);
    set_str(L, "dtype", req->dtype);
    set_str(L, "semantics", req->semantics);
    set_str(L, "unroll", req->unroll);
    set_str(L, "vjp_form", req->vjp_form);
    set_str(L, "jvp_form", req->jvp_form);
    set_str(L, "name", req->name);
    set_str(L, "dump_ir", req->dump_ir);
    set_str(L, "fuse", req->fuse);
    set_str(L, "fma", req->fma);
    set_str(L, "target", req->target);
    set_str(L, "wrt", req->wrt);
    set_str(L, "train", req->train);
    set_str(L, "optimizer", req->optimizer);
    lua_pushboolean(L, req->check_ir);
    lua_setfield(L, -2, "check_ir");
    lua_createtable(L, req->nparams, 0);
    for (int i = 0; i < req->nparams; i++) {
        lua_pushstring(L, req->params[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "params");
    push_consts(L, req);
    if (req->passes) {
        lua_newtable(L);
        for (int p = 0, n = 0; p < KG_NPASSES; p++)
            if (req->passes & (1u << p)) {
                lua_pushstring(L, kg_pass_name((kg_pass)p));
                lua_rawseti(L, -2, ++n);
            }
        lua_setfield(L, -2, "passes");
    }
}

/* ---------------------------------------------------------------------------------------- */
/* result marshalling: C copies of the pipeline's result, made while the job is protected
   (a failed allocation raises; the caller frees what was made, see kg_free) */

static char *field_str(lua_State *L, const char *key)
{
    lua_getfield(L, -1, key);
    char *s = kg_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    if (!s)
        out_of_memory(L);
    return s;
}

static lua_Integer field_int(lua_State *L, const char *key)
{
    lua_getfield(L, -1, key);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* kg_role in the order of its enum; the meaning of each is gen/roles.lua's */
static kg_role role_of(lua_State *L, const char *s)
{
    static const char *names[] = {"input", "cotangent", "tangent", "saved", "hyper", "output",
                                  "grad", "output_tangent", "save", "param", "state"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(s, names[i]) == 0)
            return (kg_role)i;
    luaL_error(L, "unknown argument role '%s'", s);
    return KG_ROLE_INPUT;
}

static void read_fn(lua_State *L, struct kg_fn *f)
{
    /* stack: fn-meta */
    f->fn = field_str(L, "fn");
    f->ws = (size_t)field_int(L, "ws");
    lua_getfield(L, -1, "params");
    int n = (int)lua_rawlen(L, -1);
    if (!(f->args = calloc((size_t)n + 1, sizeof *f->args)))
        out_of_memory(L);
    f->nargs = n;
    for (int i = 0; i < f->nargs; i++) {
        kg_arg *a = &f->args[i];
        lua_rawgeti(L, -1, i + 1);
        a->cname = field_str(L, "cname");
        a->name = field_str(L, "name");
        lua_getfield(L, -1, "role");
        a->role = role_of(L, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
        a->file = field_str(L, "file");
        a->init = field_str(L, "init");
        a->count = (size_t)field_int(L, "count");
        lua_getfield(L, -1, "shape");
        a->ndim = (int)lua_rawlen(L, -1);
        if (a->ndim > 8)
            luaL_error(L, "%s: more than 8 axes", a->cname);
        size_t count = 1; /* the generator checked the sizes; check again, in C */
        for (int k = 0; k < a->ndim; k++) {
            lua_rawgeti(L, -1, k + 1);
            lua_Integer e = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (e < 0 || (e > 0 && count > (size_t)INT_MAX / (size_t)e))
                luaL_error(L, "%s: element count beyond INT_MAX", a->cname);
            a->shape[k] = (size_t)e;
            count *= (size_t)e;
        }
        if (count != a->count)
            luaL_error(L, "%s: element count %d disagrees with its shape", a->cname, (int)a->count);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

static void read_result(lua_State *L, kg_kernel *k, const kg_request *req)
{
    static const char *keys[] = {"name", "header", "source", "jit_source", "header_file",
                                 "source_file", "params_text", "dumps"};
    for (int i = 0; i <= KG_TEXT_IR; i++)
        k->text[i] = field_str(L, keys[i]);
    k->elem_size = (req->dtype && strcmp(req->dtype, "f64") == 0) ? 8 : 4;
    lua_getfield(L, -1, "functions"); /* stack: result, functions (by pass name) */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        int p = kg_pass_from_name(lua_tostring(L, -2));
        if (p < 0)
            luaL_error(L, "the generator made a pass the library does not know: %s", lua_tostring(L, -2));
        read_fn(L, &k->fns[p]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "stats");
    k->statements = (size_t)field_int(L, "statements");
    k->bytes = (size_t)field_int(L, "bytes");
    k->table_bytes = (size_t)field_int(L, "table_bytes");
    lua_pop(L, 1);
    lua_getfield(L, -1, "named");
    k->named = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "has_closed_vjp");
    k->closed[KG_VJP] = lua_toboolean(L, -1);
    lua_getfield(L, -2, "has_closed_jvp");
    k->closed[KG_JVP] = lua_toboolean(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, -1, "libm");
    int n = (int)lua_rawlen(L, -1);
    if (!(k->libm = calloc((size_t)n + 1, sizeof *k->libm)))
        out_of_memory(L);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        k->libm[i] = kg_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
        if (!k->libm[i])
            out_of_memory(L);
        k->nlibm = i + 1;
    }
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------------------------------- */
/* jobs: one request, one Lua state, one protected call */

typedef struct {
    const char *fn;          /* pipeline function: generate, list, names, dot, plan, parts */
    const kg_request *req;   /* may be NULL (list, names) */
    const char *pass;        /* dot */
    const char *passes;      /* parts: the passes, comma-separated */
    char *const *given;      /* generate: texts of parts made by other jobs (ngiven) */
    int ngiven;
    kg_kernel *k;            /* generate: the result, filled in as it is read */
    char *text;              /* the others: their text */
} job;

static int msgh(lua_State *L)
{
    if (lua_istable(L, 1))
        return 1; /* a user error: keep it */
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(non-string error)", 1);
    return 1;
}

#define READY_KEY "kerngen.ready"

static int protected_job(lua_State *L)
{
    job *j = lua_touserdata(L, 1);
    if (lua_getfield(L, LUA_REGISTRYINDEX, READY_KEY) == LUA_TNIL) { /* a new state */
        open_libraries(L);
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, READY_KEY);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "pipeline");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, j->fn); /* stack: job, pipeline, f */
    if (j->req)
        push_request(L, j->req);
    else
        lua_newtable(L);
    set_str(L, "pass", j->pass);
    int nargs = 1;
    if (j->passes) {
        lua_pushstring(L, j->passes);
        nargs++;
    } else if (j->given) {
        lua_createtable(L, j->ngiven, 0);
        for (int i = 0; i < j->ngiven; i++) {
            lua_pushstring(L, j->given[i]);
            lua_rawseti(L, -2, i + 1);
        }
        nargs++;
    }
    lua_call(L, nargs, 1); /* stack: job, pipeline, result */
    if (strcmp(j->fn, "generate") == 0) {
        if (!(j->k = calloc(1, sizeof *j->k)))
            out_of_memory(L);
        read_result(L, j->k, j->req);
    } else {
        if (!(j->text = kg_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "")))
            out_of_memory(L);
    }
    return 0;
}

/* The pool of prepared states (see the header): as many as one request's passes use side by
   side */
enum { POOL_MAX = KG_NPASSES };
/* A state with more in chunks is closed, not kept (after requests of prenorm_ffn, groupnorm and
   seq_ffn 64x768x3072, states held 2-6 MB) */
static const size_t POOL_KEEP_BYTES = (size_t)16 << 20;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *pool[POOL_MAX];
static int pool_n;

static lua_State *pool_take(void)
{
    lua_State *L = NULL;
    pthread_mutex_lock(&pool_mu);
    if (pool_n > 0)
        L = pool[--pool_n];
    pthread_mutex_unlock(&pool_mu);
    return L;
}

static void close_state(lua_State *L)
{
    host *h = host_of(L);
    lua_close(L);
    kg_heap_release(&h->heap);
    free(h);
}

static void pool_put(lua_State *L)
{
    host *h = host_of(L);
    lua_settop(L, 0);
    pthread_mutex_lock(&pool_mu);
    int kept = pool_n < POOL_MAX && h->heap.bytes <= POOL_KEEP_BYTES; /* chunks stay with their state */
    if (kept)
        pool[pool_n++] = L;
    pthread_mutex_unlock(&pool_mu);
    if (!kept)
        close_state(L);
}

/* A built-in graph's name (spec.find takes a name with a '/' or ending in .lua for a file) */
static int builtin_graph(const char *g)
{
    size_t n = strlen(g);
    return !strchr(g, '/') && !(n >= 4 && strcmp(g + n - 4, ".lua") == 0);
}

/* Whether a request may reuse a state and return it: one for a built-in graph, or no graph at
   all (list). */
static int poolable(const job *j, const char *dir)
{
    if (dir)
        return 0;
    return !j->req || !j->req->graph || builtin_graph(j->req->graph);
}

static kg_status run_job(job *j, char **err)
{
    *err = NULL;
    const char *dir = getenv("KERNGEN_LUA_DIR");
    dir = (dir && *dir) ? dir : NULL;
    int reuse = poolable(j, dir);
    lua_State *L = reuse ? pool_take() : NULL;
    host *h;
    if (L) {
        h = host_of(L);
    } else {
        void *mem; /* a cache line of its own: its allocator's counters change all the time */
        if (posix_memalign(&mem, 64, sizeof *h + 64) != 0)
            return KG_ENOMEM;
        h = mem;
        memset(h, 0, sizeof *h);
        h->limit = GENERATOR_MEMORY;
        h->heap.cap = SIZE_MAX;
        h->dir = dir;
        if (!(L = lua_newstate(l_alloc, h))) {
            free(h);
            return KG_ENOMEM;
        }
        h->L = L;
        lua_gc(L, LUA_GCINC, GENERATOR_GC_PAUSE, 0, 0);
    }
    /* the budgets are per request */
    h->sandboxed = h->budget_set = h->refused_line = 0;
    h->chunk = NULL;
    h->failed = 0;
    /* pushing light C functions and pointers allocates nothing; lua_pcall protects the rest */
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, protected_job);
    lua_pushlightuserdata(L, j);
    int rc = lua_pcall(L, 1, 0, 1);
    kg_status st = KG_OK;
    if (rc != LUA_OK && (rc == LUA_ERRMEM || h->failed)) {
        st = KG_ENOMEM;
        *err = kg_strdup("out of memory");
    } else if (rc != LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "msg");
        st = KG_EINPUT;
        *err = kg_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    } else if (rc != LUA_OK) {
        st = KG_EINTERNAL;
        *err = kg_strdupf("internal error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    }
    if (st != KG_OK && !*err)
        st = KG_ENOMEM;
    if (st == KG_OK && reuse && !h->failed)
        pool_put(L);
    else
        close_state(L);
    if (st != KG_OK) {
        kg_free(j->k);
        free(j->text);
        j->k = NULL;
        j->text = NULL;
    }
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* a request's passes in parallel

   Once the spec is bound, each pass lowers, schedules and emits its own function. A request
   for a built-in graph with several passes is split as pipeline.plan says (a group of passes
   per line, with its relative cost); the groups run as "parts" jobs on up to generate_jobs()
   threads, this one included, costliest first, each in a Lua state of its own (from the
   pool); a last "generate" job joins the parts in pass order, so that the files are the bytes
   one job makes (tests/test_aot.c compares them). The error is that of the first failing
   group in pass order, as when the passes run one after the other. A spec file given by path
   runs in one job: its code runs once, under one budget, and reads the file once. */

enum { JOBS_MAX = 16 };

/* Threads for one request: the processors this process may run on, or KERNGEN_JOBS (1 to
   JOBS_MAX) */
static int generate_jobs(void)
{
    const char *env = getenv("KERNGEN_JOBS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= JOBS_MAX)
            return (int)v;
    }
    cpu_set_t cpus;
    int n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    return n < 1 ? 1 : n > JOBS_MAX ? JOBS_MAX : n;
}

/* Starts a worker on one of the process's processors other than the caller's: a scheduler may
   otherwise queue it behind its parent for milliseconds (seen on this project's 2-core VMs:
   0.2 to 4.5 ms before a new thread ran, 0.1-0.2 ms placed) -- longer than a pass takes. */
static int start_worker(pthread_t *t, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    cpu_set_t cpus;
    int me = sched_getcpu(), placed = 0;
    if (pthread_attr_init(&attr) != 0)
        return -1;
    if (me >= 0 && sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_ISSET(me, &cpus) && CPU_COUNT(&cpus) > 1) {
        CPU_CLR(me, &cpus);
        placed = pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus) == 0;
    }
    int rc = pthread_create(t, &attr, fn, arg);
    if (rc != 0 && placed) /* the set may have changed since: start it anywhere */
        rc = pthread_create(t, NULL, fn, arg);
    pthread_attr_destroy(&attr);
    return rc;
}

typedef struct {
    const kg_request *req;
    int n;                               /* the plan's groups, in pass order */
    int go;                              /* groups to run: n, or 0 when not split */
    char *passes[KG_NPASSES];            /* per group: its passes, comma-separated (the plan's text) */
    long cost[KG_NPASSES];
    int order[KG_NPASSES];               /* the groups, costliest first */
    char *text[KG_NPASSES], *err[KG_NPASSES]; /* per group: its parts' text, or the error */
    kg_status status[KG_NPASSES];
    int planned, next;                   /* the plan is read; the next entry of order to run */
    pthread_mutex_t mu;
    pthread_cond_t planned_cv;
} split;

static void run_groups(split *sp)
{
    for (;;) {
        pthread_mutex_lock(&sp->mu);
        int g = sp->next < sp->go ? sp->order[sp->next++] : -1;
        pthread_mutex_unlock(&sp->mu);
        if (g < 0)
            return;
        job j = {.fn = "parts", .req = sp->req, .passes = sp->passes[g]};
        sp->status[g] = run_job(&j, &sp->err[g]);
        sp->text[g] = j.text;
    }
}

/* A worker first readies a state (by making the plan too, which it drops) while its parent
   makes the plan, then runs groups. */
static void *worker(void *arg)
{
    split *sp = arg;
    job ready = {.fn = "plan", .req = sp->req};
    char *err;
    if (run_job(&ready, &err) == KG_OK)
        free(ready.text);
    else
        free(err);
    pthread_mutex_lock(&sp->mu);
    while (!sp->planned)
        pthread_cond_wait(&sp->planned_cv, &sp->mu);
    pthread_mutex_unlock(&sp->mu);
    run_groups(sp);
    return NULL;
}

/* The plan's lines "COST PASSES" into sp (the plan's text is modified in place) */
static int read_plan(split *sp, char *plan)
{
    for (char *line = plan; *line; sp->n++) {
        char *end = strchr(line, '\n'), *rest;
        if (end)
            *end = '\0';
        long cost = strtol(line, &rest, 10);
        if (sp->n == KG_NPASSES || rest == line || *rest != ' ')
            return -1;
        sp->passes[sp->n] = rest + 1;
        sp->cost[sp->n] = cost;
        line = end ? end + 1 : line + strlen(line);
    }
    for (int i = 0; i < sp->n; i++) { /* costliest first; ties in pass order */
        int k = i;
        while (k > 0 && sp->cost[sp->order[k - 1]] < sp->cost[i]) {
            sp->order[k] = sp->order[k - 1];
            k--;
        }
        sp->order[k] = i;
    }
    return 0;
}

/* kg_generate's job for a request worth splitting; *done = 0 when it is not (one job then) */
static kg_status generate_split(const kg_request *req, kg_kernel **out, char **err, int *done)
{
    *out = NULL;
    *done = 0;
    int passes = 0, jobs = generate_jobs();
    for (int p = 0; p < KG_NPASSES; p++)
        passes += !req->passes || (req->passes & (1u << p));
    /* pipeline.plan keeps these whole: ask it only when it may split (baked inputs would be
       copied into the plan's state for nothing) */
    if (jobs < 2 || passes < 2 || !builtin_graph(req->graph) || req->nconsts > 0 || req->dump_ir)
        return KG_OK;
    split sp = {.req = req};
    if (pthread_mutex_init(&sp.mu, NULL) != 0)
        return KG_OK;
    if (pthread_cond_init(&sp.planned_cv, NULL) != 0) {
        pthread_mutex_destroy(&sp.mu);
        return KG_OK;
    }
    pthread_t thread[JOBS_MAX];
    int started = 0;
    while (started < jobs - 1 && started < passes - 1 && start_worker(&thread[started], worker, &sp) == 0)
        started++;
    job plan = {.fn = "plan", .req = req};
    kg_status st = run_job(&plan, err);
    if (st == KG_OK && read_plan(&sp, plan.text) != 0) {
        *err = kg_strdup("internal error: pipeline.plan made no plan");
        st = *err ? KG_EINTERNAL : KG_ENOMEM;
    }
    pthread_mutex_lock(&sp.mu);
    sp.go = st == KG_OK && sp.n >= 2 ? sp.n : 0;
    sp.planned = 1;
    pthread_cond_broadcast(&sp.planned_cv);
    pthread_mutex_unlock(&sp.mu);
    run_groups(&sp);
    for (int i = 0; i < started; i++)
        pthread_join(thread[i], NULL);
    pthread_cond_destroy(&sp.planned_cv);
    pthread_mutex_destroy(&sp.mu);
    *done = st != KG_OK || sp.go > 0;
    for (int g = 0; g < sp.go && st == KG_OK; g++)
        if ((st = sp.status[g]) != KG_OK) {
            *err = sp.err[g];
            sp.err[g] = NULL;
        }
    if (st == KG_OK && sp.go > 0) {
        job j = {.fn = "generate", .req = req, .given = sp.text, .ngiven = sp.go};
        st = run_job(&j, err);
        *out = j.k;
    }
    for (int g = 0; g < sp.go; g++) {
        free(sp.text[g]);
        free(sp.err[g]);
    }
    free(plan.text);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* public entry points */

/* What the generator cannot check in req.consts: pointers and sizes (names, counts and values
   are checked in gen/pipeline.lua). */
static kg_status check_consts(const kg_request *req, char **err)
{
    const char *why = req->nconsts < 0 ? "nconsts is negative" : req->nconsts > 0 && !req->consts ? "consts is NULL" : NULL;
    int i = 0;
    for (; !why && i < req->nconsts; i++) {
        const kg_const *c = &req->consts[i];
        why = !c->name ? "no name" : c->count > 0 && !c->data ? "no data" : c->count > (size_t)INT_MAX ? "more than INT_MAX elements" : NULL;
    }
    if (!why)
        return KG_OK;
    *err = i > 0 ? kg_strdupf("kg_request.consts[%d]: %s", i - 1, why) : kg_strdupf("kg_request.%s", why);
    return *err ? KG_EINPUT : KG_ENOMEM;
}

kg_status kg_generate(const kg_request *req, kg_kernel **out, char **err)
{
    *out = NULL;
    *err = NULL;
    if (!req || !req->graph) {
        *err = kg_strdup("no graph given");
        return *err ? KG_EINPUT : KG_ENOMEM;
    }
    kg_status st = check_consts(req, err);
    if (st != KG_OK)
        return st;
    kg_request gen; /* the tier may change a default (kg_tier.c) */
    st = kg_tier_prepare(req, &gen, err);
    if (st != KG_OK)
        return st;
    kg_kernel *k;
    int done;
    st = generate_split(&gen, &k, err, &done);
    if (!done) {
        job j = {.fn = "generate", .req = &gen};
        st = run_job(&j, err);
        k = j.k;
    }
    if (st == KG_OK && (st = kg_tier_attach(k, req, err)) != KG_OK) {
        kg_free(k);
        k = NULL;
    }
    *out = k;
    return st;
}

static kg_status text_call(const char *fn, const kg_request *req, const char *pass, char **text, char **err)
{
    *text = NULL;
    job j = {.fn = fn, .req = req, .pass = pass};
    kg_status st = run_job(&j, err);
    *text = j.text;
    return st;
}

kg_status kg_list(char **text, char **err) { return text_call("list", NULL, NULL, text, err); }
kg_status kg_graphs(char **text, char **err) { return text_call("names", NULL, NULL, text, err); }

kg_status kg_dot(const kg_request *req, const char *pass, char **text, char **err)
{
    *text = NULL;
    *err = NULL;
    kg_status st = req ? check_consts(req, err) : KG_OK;
    if (st != KG_OK)
        return st;
    return text_call("dot", req, pass, text, err);
}
