/*
 * test_npy.c - cmocka tests for runtime/kg_npy.c.
 *
 * Round trips, files laid out byte for byte like numpy 1.24 writes them, and
 * every error path of the reader and writer. All files live in a mkdtemp()
 * directory under /tmp that the group teardown removes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kg_npy.h"

typedef struct {
    char dir[64];
} Fixture;

static int group_setup(void **state) {
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    strcpy(fx->dir, "/tmp/kg_npy_test_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int group_teardown(void **state) {
    Fixture *fx = *state;
    char path[512];
    struct dirent *e;
    DIR *d = opendir(fx->dir);

    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
            if (rmdir(path) != 0)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

static const char *tmp_path(void **state, const char *name, char *buf, size_t len) {
    Fixture *fx = *state;
    snprintf(buf, len, "%s/%s", fx->dir, name);
    return buf;
}

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Reads a whole file; the caller frees. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(1 << 20);
    assert_non_null(f);
    assert_non_null(buf);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/*
 * Builds a .npy image in memory: magic, version major.0, header length
 * (2 bytes for v1, 4 for v2/v3), header text, data. With pad set, the text is
 * padded with spaces and a '\n' to a 64-byte boundary like numpy does.
 * The caller frees.
 */
static unsigned char *make_npy(int major, const char *text, int pad, const void *data,
                               size_t nbytes, size_t *size) {
    size_t prefix = major == 1 ? 10 : 12;
    size_t tlen = strlen(text);
    size_t hlen = tlen;
    unsigned char *buf;

    if (pad)
        hlen = tlen + 1 + (64 - (prefix + tlen + 1) % 64) % 64;
    buf = malloc(prefix + hlen + nbytes);
    assert_non_null(buf);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8 & 0xff);
    if (major != 1) {
        buf[10] = (unsigned char)(hlen >> 16 & 0xff);
        buf[11] = (unsigned char)(hlen >> 24 & 0xff);
    }
    memcpy(buf + prefix, text, tlen);
    if (pad) {
        memset(buf + prefix + tlen, ' ', hlen - tlen - 1);
        buf[prefix + hlen - 1] = '\n';
    }
    if (nbytes > 0)
        memcpy(buf + prefix + hlen, data, nbytes);
    *size = prefix + hlen + nbytes;
    return buf;
}

/* Asserts that reading path fails cleanly: -1, *out reset, and one line that
   starts with the path and contains phrase. */
static void expect_read_error(const char *path, const char *phrase) {
    kg_npy t;
    char err[512];

    memset(&t, 0x5a, sizeof t);   /* garbage: the reader must reset it */
    memset(err, 0, sizeof err);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), -1);
    assert_null(t.data);
    assert_int_equal(t.ndim, 0);
    assert_int_equal(t.count, 0);
    if (strncmp(err, path, strlen(path)) != 0 || !strstr(err, phrase) || strchr(err, '\n'))
        fail_msg("message \"%s\" should start with \"%s\" and contain \"%s\"", err, path, phrase);
}

/* Writes bytes to a file, checks that reading it fails with phrase, removes it. */
static void check_bytes_error(void **state, const void *bytes, size_t n, const char *phrase) {
    char path[512];
    tmp_path(state, "bad.npy", path, sizeof path);
    write_file(path, bytes, n);
    expect_read_error(path, phrase);
    unlink(path);
}

/* Same for a v1 file with this header text (numpy-padded) and no data. */
static void check_header_error(void **state, const char *text, const char *phrase) {
    size_t n;
    unsigned char *buf = make_npy(1, text, 1, NULL, 0, &n);
    check_bytes_error(state, buf, n, phrase);
    free(buf);
}

static const double ARANGE6[6] = {0, 1, 2, 3, 4, 5};

/* What np.save writes for np.arange(6, dtype='<f8').reshape(2, 3) with numpy
   1.24, format 1.0: 10-byte prefix, the dict, 58 spaces, '\n', 48 data bytes. */
static unsigned char *numpy_v1_2x3(size_t *n) {
    static const char prefix[] = "\x93NUMPY\x01\x00\x76\x00";   /* header length 0x76 = 118 */
    static const char dict[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    unsigned char *buf = malloc(176);
    assert_non_null(buf);
    memcpy(buf, prefix, 10);
    memcpy(buf + 10, dict, 59);
    memset(buf + 69, ' ', 58);
    buf[127] = '\n';
    memcpy(buf + 128, ARANGE6, 48);
    *n = 176;
    return buf;
}

/* ---- round trips ---- */

static void roundtrip(void **state, kg_npy_dtype dtype) {
    static const size_t shapes[4][3] = {{0}, {5}, {2, 3}, {2, 3, 4}};
    char path[512], err[512];
    int ndim;

    for (ndim = 0; ndim <= 3; ndim++) {
        size_t count = 1, i;
        unsigned char *data;
        kg_npy t;
        int d;

        for (d = 0; d < ndim; d++)
            count *= shapes[ndim][d];
        data = malloc(count * dtype);
        assert_non_null(data);
        for (i = 0; i < count; i++) {
            double v = (double)i * 0.5 - 3.25;
            float fv = (float)v;
            if (dtype == KG_NPY_F64)
                memcpy(data + i * 8, &v, 8);
            else
                memcpy(data + i * 4, &fv, 4);
        }
        tmp_path(state, "rt.npy", path, sizeof path);
        assert_int_equal(kg_npy_write(path, dtype, ndim, shapes[ndim], data, err, sizeof err), 0);
        assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
        assert_int_equal(t.dtype, dtype);
        assert_int_equal(t.ndim, ndim);
        assert_int_equal(t.count, count);
        for (d = 0; d < ndim; d++)
            assert_int_equal(t.shape[d], shapes[ndim][d]);
        assert_memory_equal(t.data, data, count * dtype);
        kg_npy_free(&t);
        assert_null(t.data);
        free(data);
        unlink(path);
    }
}

static void test_roundtrip_f64(void **state) { roundtrip(state, KG_NPY_F64); }
static void test_roundtrip_f32(void **state) { roundtrip(state, KG_NPY_F32); }

static void test_roundtrip_empty(void **state) {
    static const size_t s1[1] = {0}, s3[3] = {2, 0, 3};
    char path[512], err[512];
    kg_npy t;

    tmp_path(state, "empty.npy", path, sizeof path);
    assert_int_equal(kg_npy_write(path, KG_NPY_F32, 1, s1, NULL, err, sizeof err), 0);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 1);
    assert_int_equal(t.count, 0);
    assert_non_null(t.data);   /* non-NULL on success, even when empty */
    kg_npy_free(&t);

    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 3, s3, NULL, err, sizeof err), 0);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 3);
    assert_int_equal(t.shape[1], 0);
    assert_int_equal(t.count, 0);
    kg_npy_free(&t);
    unlink(path);
}

/* The writer's bytes are identical to np.save's. */
static void test_write_matches_numpy(void **state) {
    static const size_t shape[2] = {2, 3};
    char path[512], err[512];
    size_t n, expected_n;
    unsigned char *got, *expected = numpy_v1_2x3(&expected_n);

    tmp_path(state, "w.npy", path, sizeof path);
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 2, shape, ARANGE6, err, sizeof err), 0);
    got = slurp(path, &n);
    assert_int_equal(n, expected_n);
    assert_memory_equal(got, expected, n);
    free(got);
    free(expected);
    unlink(path);
}

/* Whatever the shape, the header ends in '\n' and the data starts at a multiple of 64. */
static void test_write_header_alignment(void **state) {
    static const size_t shapes[][8] = {
        {7},
        {1, 1},
        {123456789, 0},
        {0, 18446744073709551615u},
        {1, 2, 3, 4, 5, 6, 7, 8},
        {0, 18446744073709551615u, 18446744073709551615u, 18446744073709551615u,
         18446744073709551615u, 18446744073709551615u, 18446744073709551615u, 18446744073709551615u},
    };
    static const int ndims[] = {1, 2, 2, 2, 8, 8};
    static const double zeros[40320];   /* 8! elements for the 8-d shape */
    static const char start[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (";
    char path[512], err[512];
    size_t i;

    tmp_path(state, "align.npy", path, sizeof path);
    for (i = 0; i < sizeof ndims / sizeof ndims[0]; i++) {
        size_t n, hlen;
        unsigned char *buf;
        kg_npy t;

        assert_int_equal(kg_npy_write(path, KG_NPY_F64, ndims[i], shapes[i], zeros, err, sizeof err), 0);
        buf = slurp(path, &n);
        assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        assert_int_equal((10 + hlen) % 64, 0);
        assert_int_equal(buf[10 + hlen - 1], '\n');
        assert_memory_equal(buf + 10, start, sizeof start - 1);
        free(buf);
        assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
        assert_int_equal(t.ndim, ndims[i]);
        assert_int_equal(t.shape[ndims[i] - 1], shapes[i][ndims[i] - 1]);
        kg_npy_free(&t);
    }
    unlink(path);
}

/* ---- reading what numpy writes ---- */

static void test_read_numpy_v1(void **state) {
    char path[512], err[512];
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n);
    kg_npy t;

    tmp_path(state, "v1.npy", path, sizeof path);
    write_file(path, buf, n);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.dtype, KG_NPY_F64);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.shape[0], 2);
    assert_int_equal(t.shape[1], 3);
    assert_int_equal(t.count, 6);
    assert_memory_equal(t.data, ARANGE6, 48);
    kg_npy_free(&t);
    free(buf);
    unlink(path);
}

/* np.lib.format.write_array(f, np.arange(6.).reshape(2, 3), version=(2, 0)):
   4-byte header length 0x74 = 116, the dict, 56 spaces, '\n'. */
static void test_read_numpy_v2(void **state) {
    static const char dict[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    unsigned char buf[176];
    char path[512], err[512];
    kg_npy t;

    memcpy(buf, "\x93NUMPY\x02\x00\x74\x00\x00\x00", 12);
    memcpy(buf + 12, dict, 59);
    memset(buf + 71, ' ', 56);
    buf[127] = '\n';
    memcpy(buf + 128, ARANGE6, 48);

    tmp_path(state, "v2.npy", path, sizeof path);
    write_file(path, buf, sizeof buf);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.count, 6);
    assert_memory_equal(t.data, ARANGE6, 48);
    kg_npy_free(&t);
    unlink(path);
}

/* Version 3.0 (utf8 header) float32 (3,), and a 0-d float64 scalar, both as numpy writes them. */
static void test_read_numpy_v3_and_scalar(void **state) {
    static const char dict3[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    static const char dict0[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    static const float f3[3] = {0, 1, 2};
    static const double scalar = 2.5;
    unsigned char buf[140];
    char path[512], err[512];
    kg_npy t;

    memcpy(buf, "\x93NUMPY\x03\x00\x74\x00\x00\x00", 12);
    memcpy(buf + 12, dict3, 57);
    memset(buf + 69, ' ', 58);
    buf[127] = '\n';
    memcpy(buf + 128, f3, 12);
    tmp_path(state, "v3.npy", path, sizeof path);
    write_file(path, buf, 140);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.dtype, KG_NPY_F32);
    assert_int_equal(t.ndim, 1);
    assert_int_equal(t.shape[0], 3);
    assert_memory_equal(t.data, f3, 12);
    kg_npy_free(&t);

    memcpy(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
    memcpy(buf + 10, dict0, 55);
    memset(buf + 65, ' ', 62);
    buf[127] = '\n';
    memcpy(buf + 128, &scalar, 8);
    write_file(path, buf, 136);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 0);
    assert_int_equal(t.count, 1);
    assert_memory_equal(t.data, &scalar, 8);
    kg_npy_free(&t);
    unlink(path);
}

/* Header spellings other writers produce: any key order, double quotes, no or
   extra spaces, no trailing comma, (2, 3,) tuples, Python 2 longs, CRLF, no padding. */
static void test_read_flexible_header(void **state) {
    static const struct {
        const char *text;
        int pad;
    } ok[] = {
        {"{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f8\"}", 1},
        {"{'fortran_order':False,'shape':(2,3),'descr':'<f8'}", 0},
        {"  {  'descr' : '<f8' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }  \r\n", 0},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }", 1},
        {"{'descr': \"<f8\", 'shape': (2, 3), 'fortran_order': False}\n", 0},
    };
    char path[512], err[512];
    size_t i;

    tmp_path(state, "flex.npy", path, sizeof path);
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t n;
        unsigned char *buf = make_npy(i % 2 ? 1 : 2, ok[i].text, ok[i].pad, ARANGE6, 48, &n);
        kg_npy t;

        write_file(path, buf, n);
        if (kg_npy_read(path, &t, err, sizeof err) != 0)
            fail_msg("header %zu rejected: %s", i, err);
        assert_int_equal(t.ndim, 2);
        assert_int_equal(t.shape[0], 2);
        assert_int_equal(t.shape[1], 3);
        assert_memory_equal(t.data, ARANGE6, 48);
        kg_npy_free(&t);
        free(buf);
    }
    unlink(path);
}

/* ---- reader errors ---- */

static void test_error_bad_magic(void **state) {
    static const char png[] = "\x89PNG\r\n\x1a\n0000000000000000";
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n);

    check_bytes_error(state, png, sizeof png - 1, "not a .npy file (bad magic)");
    check_bytes_error(state, "x", 1, "not a .npy file (bad magic)");
    check_bytes_error(state, "", 0, "not a .npy file (file is empty)");
    buf[5] = 'Z';   /* \x93NUMPZ */
    check_bytes_error(state, buf, n, "not a .npy file (bad magic)");
    free(buf);
}

static void test_error_truncated_header(void **state) {
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n);

    check_bytes_error(state, buf, 4, "truncated header: file is only 4 bytes long");
    check_bytes_error(state, buf, 9, "truncated header: file is only 9 bytes long");
    check_bytes_error(state, buf, 30, "truncated header: expected 118 header bytes, found 20");
    check_bytes_error(state, buf, 127, "truncated header: expected 118 header bytes, found 117");
    free(buf);
}

static void test_error_truncated_data(void **state) {
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n);

    check_bytes_error(state, buf, n - 8, "truncated: expected 48 data bytes, found 40");
    check_bytes_error(state, buf, 128, "truncated: expected 48 data bytes, found 0");
    free(buf);
}

static void test_error_trailing_bytes(void **state) {
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n), *longer = malloc(n + 3);

    assert_non_null(longer);
    memcpy(longer, buf, n);
    memcpy(longer + n, "abc", 3);
    check_bytes_error(state, longer, n + 3, "3 trailing bytes after the data");
    free(longer);
    free(buf);
}

static void test_error_dtype(void **state) {
    char path[512], err[512], expected[600];
    size_t n;
    unsigned char *buf = make_npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 1,
                                  "012345678901", 12, &n);
    kg_npy t;

    /* The whole message, exactly. */
    tmp_path(state, "x.npy", path, sizeof path);
    write_file(path, buf, n);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), -1);
    snprintf(expected, sizeof expected, "%s: dtype '<i4' is not supported (expected '<f4' or '<f8')", path);
    assert_string_equal(err, expected);
    assert_null(t.data);
    unlink(path);
    free(buf);

    check_header_error(state, "{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '>f8' is not supported (expected '<f4' or '<f8')");
    check_header_error(state, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '|b1' is not supported");
    check_header_error(state, "{'descr': '=f8', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '=f8' is not supported");
    check_header_error(state, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '<f2' is not supported");
    check_header_error(state, "{'descr': '<f8 ', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '<f8 ' is not supported");
    check_header_error(state, "{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (3,), }",
                       "structured dtypes are not supported");
    check_header_error(state, "{'descr': 8, 'fortran_order': False, 'shape': (3,), }",
                       "malformed header: expected a dtype string for 'descr', found '8,");
    /* Hostile bytes are shown as '?', never copied into the message raw. */
    check_header_error(state, "{'descr': '<\x01\x1b[2J', 'fortran_order': False, 'shape': (3,), }",
                       "dtype '<??[2J' is not supported");
}

static void test_error_fortran_order(void **state) {
    check_header_error(state, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                       "fortran_order arrays are not supported");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': 0, 'shape': (2, 3), }",
                       "'fortran_order' must be True or False, found '0'");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': , 'shape': (2, 3), }",
                       "expected True or False for 'fortran_order'");
}

static void test_error_malformed_shape(void **state) {
    static const struct {
        const char *shape, *phrase;
    } cases[] = {
        {"(2, -3)", "'shape' has a negative dimension"},
        {"(2 3)", "malformed header: expected ',' or ')' in 'shape'"},
        {"(3)", "'shape' must be a tuple like (3,) or (2, 3)"},
        {"(a,)", "expected a non-negative integer in 'shape', found 'a,)"},
        {"(,)", "expected a non-negative integer in 'shape'"},
        {"(2.5,)", "expected ',' or ')' in 'shape', found '.5,)"},
        {"[2, 3]", "expected a tuple like (2, 3) for 'shape', found '[2, 3]"},
        {"3", "expected a tuple like (2, 3) for 'shape'"},
        {"(2, 3", "expected a non-negative integer in 'shape', found '}"},
        {"(1, 1, 1, 1, 1, 1, 1, 1, 1)", "'shape' has more than 8 dimensions"},
        {"(99999999999999999999999,)", "'shape' dimension is too large"},
    };
    char text[256];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }",
                 cases[i].shape);
        check_header_error(state, text, cases[i].phrase);
    }
    /* A shape that ends the header mid-tuple. */
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, ",
                       "expected a non-negative integer in 'shape', found");
}

static void test_error_malformed_header(void **state) {
    size_t n;
    unsigned char *buf;

    check_header_error(state, "{'fortran_order': False, 'shape': (3,), }", "malformed header: missing key 'descr'");
    check_header_error(state, "{'descr': '<f8', 'shape': (3,), }", "missing key 'fortran_order'");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False}", "missing key 'shape'");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}",
                       "malformed header: unexpected key 'x'");
    check_header_error(state, "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3,)}",
                       "malformed header: duplicate key 'descr'");
    check_header_error(state, "('descr', '<f8')", "expected '{' at the start of the header, found '('descr', '<...'");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), } junk",
                       "expected only padding after '}', found 'junk");
    check_header_error(state, "{'descr': '<f8' 'fortran_order': False, 'shape': (3,), }",
                       "expected ',' or '}' after a value");
    check_header_error(state, "{'descr' '<f8', 'fortran_order': False, 'shape': (3,), }",
                       "expected ':' after a key");
    check_header_error(state, "{descr: '<f8', 'fortran_order': False, 'shape': (3,), }",
                       "expected a quoted key or '}'");
    check_header_error(state, "{'descr': '<f8", "malformed header: unterminated string");
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)",
                       "expected ',' or '}' after a value, found");
    check_header_error(state, "", "expected '{' at the start of the header, found end of header");

    /* A header length of 0, and a NUL byte inside the header. */
    buf = make_npy(1, "", 0, NULL, 0, &n);
    check_bytes_error(state, buf, n, "found end of header");
    free(buf);
    buf = make_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 1, NULL, 0, &n);
    buf[10 + 20] = '\0';
    check_bytes_error(state, buf, n, "malformed header");
    free(buf);
}

static void test_error_unsupported_version(void **state) {
    size_t n;
    unsigned char *buf = numpy_v1_2x3(&n);

    buf[6] = 4;
    check_bytes_error(state, buf, n, "unsupported .npy format version 4.0 (expected 1.0, 2.0 or 3.0)");
    buf[6] = 1;
    buf[7] = 1;
    check_bytes_error(state, buf, n, "unsupported .npy format version 1.1");
    buf[6] = 0;
    buf[7] = 0;
    check_bytes_error(state, buf, n, "unsupported .npy format version 0.0");
    free(buf);
}

static void test_error_header_too_long(void **state) {
    static const char dict[] = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
    unsigned char prefix[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xff, 0xff, 0xff, 0xff};
    char path[512], err[512];
    size_t limit = 1024 * 1024;
    unsigned char *buf = malloc(12 + limit + 1 + 8);
    double zero = 0;
    kg_npy t;

    check_bytes_error(state, prefix, sizeof prefix, "header length 4294967295 is too large (limit is 1048576 bytes)");

    /* A header of exactly 1 MiB (mostly padding) is accepted; one byte more is not. */
    assert_non_null(buf);
    memcpy(buf, prefix, 12);
    buf[8] = 0;
    buf[9] = 0;
    buf[10] = 0x10;
    buf[11] = 0;
    memcpy(buf + 12, dict, sizeof dict - 1);
    memset(buf + 12 + sizeof dict - 1, ' ', limit - (sizeof dict - 1) - 1);
    buf[12 + limit - 1] = '\n';
    memcpy(buf + 12 + limit, &zero, 8);
    tmp_path(state, "big.npy", path, sizeof path);
    write_file(path, buf, 12 + limit + 8);
    if (kg_npy_read(path, &t, err, sizeof err) != 0)
        fail_msg("1 MiB header rejected: %s", err);
    kg_npy_free(&t);
    unlink(path);

    buf[8] = 1;   /* length 0x00100001 */
    buf[12 + limit - 1] = ' ';
    buf[12 + limit] = '\n';
    memcpy(buf + 12 + limit + 1, &zero, 8);
    check_bytes_error(state, buf, 12 + limit + 1 + 8, "header length 1048577 is too large");
    free(buf);
}

static void test_error_size_overflow(void **state) {
    /* count overflows size_t */
    check_header_error(state,
                       "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
                       "shape [18446744073709551615, 2] is too large");
    /* count fits, count * 8 does not */
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
                       "shape [4611686018427387904] is too large");
    /* fits in memory in theory, but the file is far too short: no huge allocation happens */
    check_header_error(state, "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }",
                       "truncated: expected 8000000000000 data bytes, found 0");
}

/* A zero dimension makes the array empty, however large the other dimensions are. */
static void test_read_zero_dim_with_huge_dims(void **state) {
    char path[512], err[512];
    size_t n;
    unsigned char *buf = make_npy(
        1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 18446744073709551615, 2), }", 1,
        NULL, 0, &n);
    kg_npy t;

    tmp_path(state, "zero.npy", path, sizeof path);
    write_file(path, buf, n);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), 0);
    assert_int_equal(t.ndim, 3);
    assert_int_equal(t.count, 0);
    kg_npy_free(&t);
    free(buf);
    unlink(path);
}

static void test_error_cannot_open(void **state) {
    char path[512];
    Fixture *fx = *state;

    tmp_path(state, "does-not-exist.npy", path, sizeof path);
    expect_read_error(path, "cannot open: No such file or directory");
    expect_read_error(fx->dir, "cannot open: Is a directory");
}

/* Every prefix of a valid file and many single-byte corruptions must fail
   cleanly (or, rarely, still parse) without crashing or leaking. */
static void test_hostile_bytes(void **state) {
    static const unsigned char values[] = {0x00, 0xff, ' ', '(', ')', ',', '\'', '"', '9', '{', '}', ':', '-', 'L', '\n'};
    char path[512], err[512];
    size_t n, i, v;
    unsigned char *buf = numpy_v1_2x3(&n);
    kg_npy t;

    tmp_path(state, "hostile.npy", path, sizeof path);
    for (i = 0; i < n; i++) {
        write_file(path, buf, i);
        assert_int_equal(kg_npy_read(path, &t, err, sizeof err), -1);
        assert_null(t.data);
        assert_true(strncmp(err, path, strlen(path)) == 0);
    }
    for (i = 0; i < 128; i++) {
        for (v = 0; v < sizeof values; v++) {
            unsigned char saved = buf[i];
            buf[i] = values[v];
            write_file(path, buf, n);
            if (kg_npy_read(path, &t, err, sizeof err) == 0) {
                assert_non_null(t.data);
                kg_npy_free(&t);
            } else {
                assert_null(t.data);
                assert_true(strncmp(err, path, strlen(path)) == 0);
                assert_null(strchr(err, '\n'));
            }
            buf[i] = saved;
        }
    }
    free(buf);
    unlink(path);
}

/* ---- writer errors ---- */

static void test_write_errors(void **state) {
    static const size_t shape[2] = {2, 3}, huge[2] = {18446744073709551615u, 2};
    char path[512], err[512];
    struct stat st;

    tmp_path(state, "no-such-dir/x.npy", path, sizeof path);
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 2, shape, ARANGE6, err, sizeof err), -1);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_non_null(strstr(err, "cannot create: No such file or directory"));

    tmp_path(state, "w.npy", path, sizeof path);
    assert_int_equal(kg_npy_write(path, (kg_npy_dtype)2, 2, shape, ARANGE6, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write element size 2 (expected 4 or 8)"));
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 9, shape, ARANGE6, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot write 9 dimensions (expected 0 to 8)"));
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, -1, shape, ARANGE6, err, sizeof err), -1);
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 2, NULL, ARANGE6, err, sizeof err), -1);
    assert_non_null(strstr(err, "no shape given"));
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 2, shape, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no data given"));
    assert_int_equal(kg_npy_write(path, KG_NPY_F64, 2, huge, ARANGE6, err, sizeof err), -1);
    assert_non_null(strstr(err, "shape [18446744073709551615, 2] is too large"));
    assert_int_equal(stat(path, &st), -1);   /* argument errors create nothing */

    /* Disk full on a device: reported, and the device is not removed. */
    if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) {
        assert_int_equal(kg_npy_write("/dev/full", KG_NPY_F64, 2, shape, ARANGE6, err, sizeof err), -1);
        assert_true(strncmp(err, "/dev/full: write failed: ", 25) == 0);
        assert_non_null(strstr(err, "No space left on device"));
        assert_int_equal(stat("/dev/full", &st), 0);
    }
}

/* A write that runs out of space part way removes the partial file. The file
   size limit (RLIMIT_FSIZE) stands in for a full disk, in a child process so
   the limit does not leak into other tests. */
static void test_write_failure_removes_file(void **state) {
    static const size_t shape[1] = {100000};
    char path[512];
    struct stat st;
    int status;
    pid_t pid;

    tmp_path(state, "partial.npy", path, sizeof path);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        char err[512];
        double *data = calloc(100000, sizeof *data);
        int ok;

        rl.rlim_cur = rl.rlim_max = 4096;
        signal(SIGXFSZ, SIG_IGN);   /* get EFBIG from write() instead of being killed */
        if (!data || setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(3);
        ok = kg_npy_write(path, KG_NPY_F64, 1, shape, data, err, sizeof err) == -1 &&
             strncmp(err, path, strlen(path)) == 0 && strstr(err, ": write failed: File too large") != NULL;
        free(data);
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(stat(path, &st), -1);
}

/* ---- small pieces ---- */

static void test_shape_str(void **state) {
    static const size_t s[3] = {2, 3, 40};
    char buf[64], tiny[4];

    (void)state;
    assert_string_equal(kg_npy_shape_str(2, s, buf, sizeof buf), "[2, 3]");
    assert_string_equal(kg_npy_shape_str(3, s, buf, sizeof buf), "[2, 3, 40]");
    assert_string_equal(kg_npy_shape_str(1, s, buf, sizeof buf), "[2]");
    assert_string_equal(kg_npy_shape_str(0, NULL, buf, sizeof buf), "[]");
    /* Too small: cut, but always terminated and never overrun. */
    assert_string_equal(kg_npy_shape_str(3, s, tiny, sizeof tiny), "[2,");
    tiny[0] = 'x';
    kg_npy_shape_str(3, s, tiny, 0);
    assert_int_equal(tiny[0], 'x');
}

static void test_free_and_small_err(void **state) {
    char path[512], err[8];
    kg_npy t;

    kg_npy_free(NULL);
    memset(&t, 0, sizeof t);
    kg_npy_free(&t);
    kg_npy_free(&t);
    assert_null(t.data);

    /* A tiny error buffer gets a cut but terminated message; no buffer at all is fine too. */
    tmp_path(state, "missing.npy", path, sizeof path);
    memset(err, 'x', sizeof err);
    assert_int_equal(kg_npy_read(path, &t, err, sizeof err), -1);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_memory_equal(err, path, sizeof err - 1);
    assert_int_equal(kg_npy_read(path, &t, NULL, 0), -1);
    assert_null(t.data);
    assert_int_equal(kg_npy_read(NULL, &t, err, sizeof err), -1);
    assert_int_equal(kg_npy_read(path, NULL, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_f64),
        cmocka_unit_test(test_roundtrip_f32),
        cmocka_unit_test(test_roundtrip_empty),
        cmocka_unit_test(test_write_matches_numpy),
        cmocka_unit_test(test_write_header_alignment),
        cmocka_unit_test(test_read_numpy_v1),
        cmocka_unit_test(test_read_numpy_v2),
        cmocka_unit_test(test_read_numpy_v3_and_scalar),
        cmocka_unit_test(test_read_flexible_header),
        cmocka_unit_test(test_error_bad_magic),
        cmocka_unit_test(test_error_truncated_header),
        cmocka_unit_test(test_error_truncated_data),
        cmocka_unit_test(test_error_trailing_bytes),
        cmocka_unit_test(test_error_dtype),
        cmocka_unit_test(test_error_fortran_order),
        cmocka_unit_test(test_error_malformed_shape),
        cmocka_unit_test(test_error_malformed_header),
        cmocka_unit_test(test_error_unsupported_version),
        cmocka_unit_test(test_error_header_too_long),
        cmocka_unit_test(test_error_size_overflow),
        cmocka_unit_test(test_read_zero_dim_with_huge_dims),
        cmocka_unit_test(test_error_cannot_open),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_write_failure_removes_file),
        cmocka_unit_test(test_shape_str),
        cmocka_unit_test(test_free_and_small_err),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
