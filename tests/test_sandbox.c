/* test_sandbox: graph specs are code, loaded in a sandbox. Every spec in tests/specs/bad/ must
 * fail with KG_EINPUT and the message its first line announces ("-- expect: TEXT"): no io, os,
 * load, require, debug, string.dump, metatables or pcall; an endless loop hits the instruction
 * budget and a memory bomb the memory cap; errors name the spec file and line. A bytecode
 * spec is refused. The sandbox leaves no trace (no file written) and the process stays usable. */
#define _GNU_SOURCE /* mkstemps */
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

/* Generates; should a hostile spec wrongly succeed, also compiles and calls every pass on
   zeroed buffers, so that injected code would run and the test would see its effect. */
static kg_status generate(const char *graph, char **err)
{
    kg_request req = {0};
    kg_kernel *k = NULL;
    req.graph = graph;
    kg_status st = kg_generate(&req, &k, err);
    if (st == KG_OK && kg_compile(k, err) == KG_OK) {
        for (int p = 0; p < KG_NPASSES; p++) {
            int n = kg_nargs(k, (kg_pass)p);
            void **args = calloc((size_t)n + 1, sizeof *args);
            for (int i = 0; i < n; i++)
                args[i] = calloc(kg_arg_at(k, (kg_pass)p, i)->count + 1, kg_elem_size(k));
            args[n] = calloc(kg_ws_size(k, (kg_pass)p) + 1, kg_elem_size(k));
            kg_call(k, (kg_pass)p, args, n + 1);
            for (int i = 0; i <= n; i++)
                free(args[i]);
            free(args);
        }
    }
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
    assert_non_null(strstr(err, path)); /* names the file */
    free(err);
    remove(path);
}

/* Writes text to a new spec file /tmp/kg_spec_XXXXXX.lua; returns its path (malloc'd). */
static char *spec_file(const char *text)
{
    char *path = strdup("/tmp/kg_spec_XXXXXX.lua");
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    return path;
}

/* Generates the spec at path with a dtype and a VJP form (NULL: the defaults). */
static kg_status generate_as(const char *path, const char *dtype, const char *vjp_form, kg_kernel **k, char **err)
{
    kg_request req = {0};
    req.graph = path;
    req.dtype = dtype;
    req.vjp_form = vjp_form;
    *k = NULL;
    *err = NULL;
    return kg_generate(&req, k, err);
}

/* A spec that tries to change what the generator already checked, from inside its forward:
   its dims and attrs (g.dim, g.attr), its own declaration table, a tensor's IR node (handles
   hide it) and shape (a copy). None of it may reach the generated files. */
static void spec_cannot_write_generator_state(void **state)
{
    (void)state;
    char *path = spec_file(
        "local S\n"
        "S = {\n"
        "  name = \"mutator\", summary = \"tries to write generator state\",\n"
        "  dims = { { \"n\", 4 } }, attrs = { { \"eps\", kind = \"number\", default = 0.5 } },\n"
        "  inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
        "  forward = function(g, v)\n"
        "    g.dim.n = \"n */ #error dims /* \"\n"
        "    g.attr.eps = \"1 */ #error attrs /*\"\n"
        "    S.summary = \"*/ #error summary /*\"\n"
        "    S.outputs[1] = \"x\"\n"
        "    for _ in pairs(v.x) do error(\"a tensor handle exposes fields\") end\n"
        "    local shape = v.x.shape\n"
        "    shape[1] = 99\n"
        "    assert(v.x.shape[1] == 4, \"a tensor's shape was writable\")\n"
        "    v.y = v.x * 2\n"
        "  end,\n"
        "}\n"
        "return S\n");
    kg_request req = {0};
    req.graph = path;
    kg_kernel *k = NULL;
    char *err = NULL;
    kg_status st = kg_generate(&req, &k, &err);
    if (st != KG_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(st, KG_OK);
    assert_string_equal(kg_text(k, KG_TEXT_NAME), "mutator_4_f32");
    assert_null(strstr(kg_text(k, KG_TEXT_HEADER), "#error"));
    assert_null(strstr(kg_text(k, KG_TEXT_SOURCE), "#error"));
    assert_non_null(strstr(kg_text(k, KG_TEXT_HEADER), "tries to write generator state"));
    assert_non_null(strstr(kg_text(k, KG_TEXT_HEADER), "MUTATOR_4_F32_Y_SIZE 4 "));
    assert_non_null(strstr(kg_text(k, KG_TEXT_HEADER), "eps=0.5"));
    kg_free(k);
    remove(path);
    free(path);
}

/* Spec files over 1 MiB are refused before reading (regressions: up to 128 MiB were read; 66
   MB of labels, which Lua's parser checks pairwise, parsed for 36 s unseen by the hook). */
static void big_spec_refused(void **state)
{
    (void)state;
    char *path = spec_file("-- a big spec\n");
    assert_int_equal(truncate(path, (1 << 20) + 1), 0); /* sparse */
    char *err = NULL;
    assert_int_equal(generate(path, &err), KG_EINPUT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "larger than 1 MiB"));
    free(err);
    remove(path);
    free(path);
}

/* The same request gives the same bytes: a spec sees no address (ASLR), no hash order (string
   hashes are seeded per Lua state, and a spec given by path runs in a fresh state each time)
   and no sort order that ties leave to the clock. This one baked pairs' order, a table's
   address (through tostring, string.format and a string method) and the order of ties into a
   constant: other bytes on every run. */
static void same_request_same_bytes(void **state)
{
    (void)state;
    char *path = spec_file(
        "local t = { alpha = 1, beta = 2, gamma = 3, delta = 4, eps = 5, zeta = 6, eta = 7, theta = 8 }\n"
        "local order = 0\n"
        "for _, v in pairs(t) do order = (order * 7 + v) % 1000003 end\n"
        "local addr = (tonumber(tostring({}):sub(8), 16) or 0) % 1000003\n"
        "local text = string.format(\"%s %s\", {}, function() end) .. (\"%s\"):format({})\n"
        "local arr = {}\n" /* ties after an unbalanced partition: Lua's own sort takes the clock */
        "for i = 1, 1000 do arr[i] = { k = 1, v = i } end\n"
        "arr[1].k, arr[500].k, arr[1000].k = 0, 0, 0\n"
        "table.sort(arr, function(a, b) return a.k < b.k end)\n"
        "for _, e in ipairs(arr) do order = (order * 31 + e.v) % 1000003 end\n"
        "return {\n"
        "  name = \"same_bytes\", summary = \"deterministic\",\n"
        "  dims = { { \"n\", 4 } }, inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
        "  forward = function(g, v) v.y = v.x * order + addr + #text end,\n"
        "}\n");
    char *text[2];
    for (int i = 0; i < 2; i++) {
        kg_kernel *k;
        char *err;
        assert_int_equal(generate_as(path, NULL, NULL, &k, &err), KG_OK);
        text[i] = strdup(kg_text(k, KG_TEXT_SOURCE));
        kg_free(k);
    }
    assert_string_equal(text[0], text[1]);
    free(text[0]);
    free(text[1]);
    remove(path);
    free(path);
}

/* Constants beyond the kernel's type are input errors that name the spec, not internal errors
   (folding 1e308 * 1e308 ended in a generator traceback, exit 3) or inf in the code (1e39 was
   written as 1e+39f). */
static void constants_out_of_range(void **state)
{
    (void)state;
    char *path = spec_file("return {\n"
                           "  name = \"far\", summary = \"constants out of range\",\n"
                           "  dims = { { \"n\", 4 } }, inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
                           "  forward = function(g, v)\n"
                           "    v.c = 1e308\n"
                           "    v.y = v.x + v.c * v.c\n"
                           "  end,\n"
                           "}\n");
    static const char *const dtype[] = {"f64", "f32"};
    static const char *const want[] = {"constant arithmetic (mul) gives inf", ":5: value c 1e+308 is beyond float's range"};
    for (int i = 0; i < 2; i++) {
        kg_kernel *k;
        char *err;
        assert_int_equal(generate_as(path, dtype[i], NULL, &k, &err), KG_EINPUT);
        assert_non_null(strstr(err, path));
        assert_non_null(strstr(err, want[i]));
        free(err);
    }
    remove(path);
    free(path);
}

/* An attr's default is kept as parsed: its raw text (whitespace, line breaks) reached the
   banner of both files. */
static void attr_defaults_as_parsed(void **state)
{
    (void)state;
    char *path = spec_file("return {\n"
                           "  name = \"attrs\", summary = \"raw defaults\", dims = { { \"n\", 4 } },\n"
                           "  attrs = { { \"eps\", kind = \"number\", default = \"\\n\\t 0x1P-3 \\r\\n\\v\\f\" },\n"
                           "            { \"k\", kind = \"int\", default = \"  0x10\\n\" } },\n"
                           "  inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
                           "  forward = function(g, v) v.y = v.x * g.attr.eps + g.attr.k end,\n"
                           "}\n");
    kg_kernel *k;
    char *err;
    assert_int_equal(generate_as(path, NULL, NULL, &k, &err), KG_OK);
    assert_non_null(strstr(kg_text(k, KG_TEXT_HEADER), " * params:  n=4 eps=0.125 k=16\n"));
    kg_free(k);
    remove(path);
    free(path);
}

/* A tensor handle kept from forward and used in a closed-form rule made its node in forward's
   finished graph, whose ids mean other nodes of the rule's graph: the VJP silently read
   exp(y_cot) instead of 3 x (CSE keys are argument ids). */
static void tensor_of_another_function(void **state)
{
    (void)state;
    char *path = spec_file("local fx\n"
                           "return {\n"
                           "  name = \"kept\", summary = \"keeps a handle\", dims = { { \"n\", 4 } },\n"
                           "  inputs = { { \"x\", \"n\" } }, outputs = { \"y\" },\n"
                           "  forward = function(g, v) fx = v.x; v.y = g.exp(v.x) end,\n"
                           "  vjp = function(g, v, cot)\n"
                           "    local a = fx * 3\n"
                           "    local r1 = cot.y * g.exp(cot.y)\n"
                           "    return { x = cot.y * a + 0 * r1 }\n"
                           "  end,\n"
                           "}\n");
    kg_kernel *k;
    char *err;
    assert_int_equal(generate_as(path, NULL, "closed", &k, &err), KG_EINPUT);
    assert_non_null(strstr(err, ":9: argument is a tensor of another function of the spec"));
    free(err);
    remove(path);
    free(path);
}

/* A step of many workspace buffers takes the workspace whole: 150 chained products gave one
   step about 300 pointer parameters, beyond tcc's value stack ("out of memory (libtcc)"). */
static void many_buffers_compile(void **state)
{
    (void)state;
    char *path = spec_file("return {\n"
                           "  name = \"chain\", summary = \"150 products\", dims = { { \"n\", 8 }, { \"m\", 4 } },\n"
                           "  inputs = { { \"x\", \"n\", \"m\" }, { \"w\", \"m\", \"m\" } }, outputs = { \"y\" },\n"
                           "  forward = function(g, v)\n"
                           "    local t = v.x\n"
                           "    for _ = 1, 150 do t = g.linear(t, v.w) end\n"
                           "    v.y = t\n"
                           "  end,\n"
                           "}\n");
    kg_kernel *k;
    char *err;
    assert_int_equal(generate_as(path, NULL, NULL, &k, &err), KG_OK);
    assert_non_null(strstr(kg_text(k, KG_TEXT_JIT_SOURCE), " *restrict ws_1 = ws + ")); /* the whole workspace */
    kg_status st = kg_compile(k, &err);
    if (st != KG_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(st, KG_OK);
    kg_free(k);
    remove(path);
    free(path);
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
    const struct CMUnitTest extra[] = {cmocka_unit_test(bytecode_refused),
                                       cmocka_unit_test(spec_cannot_write_generator_state),
                                       cmocka_unit_test(big_spec_refused), cmocka_unit_test(same_request_same_bytes),
                                       cmocka_unit_test(constants_out_of_range), cmocka_unit_test(attr_defaults_as_parsed),
                                       cmocka_unit_test(tensor_of_another_function), cmocka_unit_test(many_buffers_compile),
                                       cmocka_unit_test(still_usable)};
    return kgt_run_spec_dir("sandbox", BAD_DIR, bad_spec, extra, 9);
}
