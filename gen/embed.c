/* embed: build tool. Writes a C file holding files as byte arrays (C99 caps string literals at
 * 4095 characters), so the kerngen binary carries its generator, graph specs and templates:
 *     embed OUT.c [--bytecode FILE...] [--spec FILE...] [--text FILE...]
 * --bytecode files (the generator's own Lua modules) are stored precompiled, with line numbers
 * but without the names of locals and upvalues (without_names), which saves parsing them on
 * every request; --text files (templates) are stored as they are.
 * --spec files (the built-in graph specs of graphs/) are stored precompiled too (they are
 * the repository's own code; specs from users are always loaded as text) and indexed: embed
 * runs each in a plain Lua state to list the graphs it defines (kg_graph_index), so that a
 * request loads only the file of its graph. A graph defined twice fails the build; a name that
 * is not an identifier stays out of the index (the generator reports it when it loads the file).
 * Paths are stored as given.
 *     embed --lua SCRIPT ARG...
 * runs a build-time Lua script (gen/mathlib.lua) with the generator's modules on the path
 * (gen/?.lua; kg_host gives only the pattern functions) and arg = {ARG...}. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

enum { MAX_GRAPHS = 4096 };
static char *graph_names[MAX_GRAPHS];
static const char *graph_paths[MAX_GRAPHS];
static int ngraphs;

static int is_identifier(const char *s)
{
    if (!isalpha((unsigned char)*s) && *s != '_')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

/* stack: ..., graph table. Adds its name to the index; 0, or -1 for a duplicate. */
static int index_graph(lua_State *L, const char *path)
{
    int rc = 0;
    if (lua_getfield(L, -1, "name") == LUA_TSTRING && is_identifier(lua_tostring(L, -1))) {
        const char *name = lua_tostring(L, -1);
        for (int i = 0; i < ngraphs; i++)
            if (strcmp(graph_names[i], name) == 0) {
                fprintf(stderr, "embed: %s: graph '%s' defined twice (also in %s)\n", path, name, graph_paths[i]);
                rc = -1;
            }
        size_t len = strlen(name) + 1;
        if (rc == 0 && ngraphs < MAX_GRAPHS && (graph_names[ngraphs] = malloc(len)) != NULL) {
            memcpy(graph_names[ngraphs], name, len);
            graph_paths[ngraphs++] = path;
        }
        else if (rc == 0)
            rc = -1; /* out of memory, or too many graphs */
    }
    lua_pop(L, 1);
    return rc;
}

/* Runs the spec at path and indexes the graphs it returns (one table or a list); -1 on error. */
static int index_spec(const char *path)
{
    lua_State *L = luaL_newstate();
    if (!L)
        return -1;
    luaL_openlibs(L);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "unpack");
    lua_setglobal(L, "unpack"); /* as in the sandbox (gen/spec.lua) */
    lua_pop(L, 1);
    int rc = 0;
    if (luaL_loadfilex(L, path, "t") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
        rc = -1;
    } else if (lua_istable(L, -1)) { /* stack: result */
        if (lua_rawgeti(L, -1, 1) == LUA_TNIL) {
            lua_pop(L, 1);
            rc = index_graph(L, path);
        } else {
            lua_pop(L, 1);
            for (lua_Integer k = 1; rc == 0 && lua_rawgeti(L, -1, k) == LUA_TTABLE; k++) {
                rc = index_graph(L, path);
                lua_pop(L, 1);
            }
        }
    }
    lua_close(L);
    return rc;
}

typedef struct {
    FILE *out;
    long n;
} sink;

static void put_byte(sink *s, int c)
{
    fprintf(s->out, "%s%d,", s->n % 24 == 0 ? "\n    " : "", c);
    s->n++;
}

/* lua_dump's output, collected */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} bytes;

static int collect(lua_State *L, const void *p, size_t size, void *ud)
{
    (void)L;
    bytes *b = ud;
    if (b->n + size > b->cap) {
        size_t cap = 2 * (b->n + size);
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return 1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, size);
    b->n += size;
    return 0;
}

/* ---- the generator's bytecode without the names of locals and upvalues ----
   Loading them is a quarter of a state's start (every name is a string to intern: 1.9 -> 1.5
   ms to require the generator), and only a traceback's "in local 'f'" shows them; line
   numbers and sources stay. A copy of lua_dump's output (Lua 5.4's format, lundump.c) with
   both lists emptied; any surprise in the format keeps the dump as it was. */
typedef struct {
    const unsigned char *in;
    size_t at, len;
    bytes out;
    int bad;
} rewrite;

static size_t rd_size(rewrite *r, int keep)
{
    size_t x = 0, start = r->at;
    for (;;) {
        if (r->at >= r->len || x > ((size_t)-1 >> 8)) {
            r->bad = 1;
            return 0;
        }
        int c = r->in[r->at++];
        x = (x << 7) | (size_t)(c & 0x7f);
        if (c & 0x80)
            break;
    }
    if (keep && collect(NULL, r->in + start, r->at - start, &r->out))
        r->bad = 1;
    return x;
}

static void rd_bytes(rewrite *r, size_t n, int keep)
{
    if (r->bad || n > r->len - r->at) {
        r->bad = 1;
        return;
    }
    if (keep && collect(NULL, r->in + r->at, n, &r->out))
        r->bad = 1;
    r->at += n;
}

static void rd_string(rewrite *r, int keep)
{
    size_t n = rd_size(r, keep);
    if (n > 0)
        rd_bytes(r, n - 1, keep);
}

static void rd_function(rewrite *r, int depth)
{
    enum { VNUMINT = 3, VSHRSTR = 4, VNUMFLT = 19, VLNGSTR = 20 };
    if (depth > 200) {
        r->bad = 1;
        return;
    }
    rd_string(r, 1);                /* source */
    rd_size(r, 1);                  /* linedefined */
    rd_size(r, 1);                  /* lastlinedefined */
    rd_bytes(r, 3, 1);              /* numparams, is_vararg, maxstacksize */
    rd_bytes(r, 4 * rd_size(r, 1), 1); /* code */
    for (size_t n = rd_size(r, 1); n > 0 && !r->bad; n--) { /* constants */
        size_t t = r->at < r->len ? r->in[r->at] : 0;
        rd_bytes(r, 1, 1);
        if (t == VNUMINT || t == VNUMFLT)
            rd_bytes(r, 8, 1);
        else if (t == VSHRSTR || t == VLNGSTR)
            rd_string(r, 1);
    }
    rd_bytes(r, 3 * rd_size(r, 1), 1); /* upvalues: instack, idx, kind */
    for (size_t n = rd_size(r, 1); n > 0 && !r->bad; n--)
        rd_function(r, depth + 1);
    rd_bytes(r, rd_size(r, 1), 1);  /* lineinfo */
    for (size_t n = rd_size(r, 1); n > 0 && !r->bad; n--) { /* abslineinfo: pc, line */
        rd_size(r, 1);
        rd_size(r, 1);
    }
    static const unsigned char none = 0x80; /* a count of 0 */
    for (int list = 0; list < 2; list++) { /* locvars (name, startpc, endpc), upvalue names */
        size_t n = rd_size(r, 0);
        if (collect(NULL, &none, 1, &r->out))
            r->bad = 1;
        for (; n > 0 && !r->bad; n--) {
            rd_string(r, 0);
            if (list == 0) {
                rd_size(r, 0);
                rd_size(r, 0);
            }
        }
    }
}

/* d without the names (a new buffer), or NULL: then d is used as it is */
static unsigned char *without_names(lua_State *L, const bytes *d, size_t *len)
{
    enum { HEADER = 4 + 1 + 1 + 6 + 3 + 8 + 8 + 1 }; /* signature ... LUAC_NUM, sizeupvalues */
    rewrite r = {d->p, 0, d->n, {NULL, 0, 0}, 0};
    if (d->n < HEADER || d->p[4] != 0x54) /* Lua 5.4's format */
        return NULL;
    rd_bytes(&r, HEADER, 1);
    rd_function(&r, 0);
    if (r.bad || r.at != r.len || luaL_loadbufferx(L, (const char *)r.out.p, r.out.n, "check", "b") != LUA_OK) {
        free(r.out.p);
        return NULL;
    }
    lua_pop(L, 1);
    *len = r.out.n;
    return r.out.p;
}

/* keep_names: the bytecode keeps every name (the built-in specs: they are small, and their
   errors are what users read) */
static long put_array(FILE *out, int index, const char *path, int bytecode, int keep_names)
{
    FILE *in = fopen(path, "rb");
    if (!in) {
        perror(path);
        return -1;
    }
    fprintf(out, "/* %s */\nstatic const unsigned char file%d[] = {", path, index);
    sink s = {out, 0};
    if (bytecode) {
        luaL_Buffer b;
        lua_State *L = luaL_newstate();
        luaL_buffinit(L, &b);
        int c;
        while ((c = fgetc(in)) != EOF)
            luaL_addchar(&b, (char)c);
        luaL_pushresult(&b);
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        char chunk[512];
        snprintf(chunk, sizeof chunk, "@%s", path);
        if (luaL_loadbufferx(L, text, len, chunk, "t") != LUA_OK) {
            fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
            lua_close(L);
            fclose(in);
            return -1;
        }
        bytes d = {NULL, 0, 0};
        size_t n = 0;
        if (lua_dump(L, collect, &d, 0) != 0) {
            fprintf(stderr, "embed: %s: out of memory\n", path);
            lua_close(L);
            fclose(in);
            return -1;
        }
        unsigned char *slim = keep_names ? NULL : without_names(L, &d, &n);
        if (!slim && !keep_names)
            fprintf(stderr, "embed: %s: bytecode format not as expected, stored with its names\n", path);
        if (!slim)
            n = d.n;
        for (size_t i = 0; i < n; i++)
            put_byte(&s, (slim ? slim : d.p)[i]);
        free(slim);
        free(d.p);
        lua_close(L);
    } else {
        int c;
        while ((c = fgetc(in)) != EOF)
            put_byte(&s, c);
    }
    fputs("0};\n\n", out);
    fclose(in);
    return s.n;
}

/* embed --lua SCRIPT ARG...: exit status 0, or 1 with the error on stderr */
static int run_script(int argc, char **argv)
{
    static const char setup[] =
        "package.path = 'gen/?.lua'\n"
        "package.preload.kg_host = function() return { pattern = { find = string.find, "
        "match = string.match, gmatch = string.gmatch, gsub = string.gsub } } end\n";
    lua_State *L = luaL_newstate();
    if (!L)
        return 1;
    luaL_openlibs(L);
    lua_createtable(L, argc - 3, 0);
    for (int i = 3; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 2);
    }
    lua_setglobal(L, "arg");
    int rc = luaL_dostring(L, setup) != LUA_OK || luaL_dofile(L, argv[2]) != LUA_OK;
    if (rc)
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--lua") == 0)
        return run_script(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: embed OUT.c [--bytecode FILE...] [--spec FILE...] [--text FILE...]\n"
                        "       embed --lua SCRIPT ARG...\n");
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    long *len = calloc((size_t)argc, sizeof *len);
    const char **paths = calloc((size_t)argc, sizeof *paths);
    if (!len || !paths)
        return 1;
    fputs("/* Generated by gen/embed.c at build time. Do not edit. */\n#include \"kg_internal.h\"\n\n", out);
    int n = 0, bytecode = 0, specs = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--bytecode") == 0 || strcmp(argv[i], "--spec") == 0 || strcmp(argv[i], "--text") == 0) {
            bytecode = strcmp(argv[i], "--text") != 0;
            specs = strcmp(argv[i], "--spec") == 0;
            continue;
        }
        if (specs && index_spec(argv[i]) < 0)
            return 1;
        if ((len[n] = put_array(out, n, argv[i], bytecode, specs)) < 0)
            return 1;
        paths[n++] = argv[i];
    }
    fputs("const kg_embedded_file kg_embedded[] = {\n", out);
    for (int i = 0; i < n; i++)
        fprintf(out, "    {\"%s\", (const char *)file%d, %ld},\n", paths[i], i, len[i]);
    fprintf(out, "};\nconst size_t kg_embedded_count = %d;\n\n", n);
    fputs("const kg_graph_file kg_graph_index[] = {\n", out);
    for (int i = 0; i < ngraphs; i++)
        fprintf(out, "    {\"%s\", \"%s\"},\n", graph_names[i], graph_paths[i]);
    if (ngraphs == 0)
        fputs("    {\"\", \"\"},\n", out); /* C99 has no empty initializer */
    fprintf(out, "};\nconst size_t kg_graph_index_count = %d;\n", ngraphs);
    free(len);
    free(paths);
    return fclose(out) == 0 ? 0 : 1;
}
