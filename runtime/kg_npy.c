/*
 * kg_npy.c - read and write NumPy .npy files.
 *
 * Accepts: format versions 1.0, 2.0 and 3.0; a header dict with exactly the
 * keys 'descr', 'fortran_order' and 'shape', in any order, with single or
 * double quotes, any spacing, an optional trailing comma and trailing
 * space/newline padding; 'descr' '<f4' or '<f8'; 'fortran_order' False;
 * 'shape' a tuple of at most 8 non-negative integers.
 *
 * Rejects everything else with one line of text that starts with the file
 * name: other dtypes (including '>f8', '=f8' and structured dtypes),
 * Fortran-order arrays, malformed headers, headers over 1 MiB, truncated
 * files and trailing bytes after the data.
 *
 * Every byte of the file is treated as hostile: parsing never looks past the
 * header length, sizes are checked for overflow before use, the file size is
 * checked before allocating, and header text is sanitized before it is
 * echoed in a message. Nothing is printed and there is no global state.
 *
 * Data is little-endian both on disk and in memory, so the host must be
 * little-endian (x86, ARM).
 */
#define _POSIX_C_SOURCE 200809L
#include "kg_npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "kg_npy.c assumes a little-endian host"
#endif

static const unsigned char MAGIC[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* numpy itself never writes headers this big; a bigger one is garbage or an attack. */
#define MAX_HEADER_LEN ((size_t)1024 * 1024)

/* Header text echoed in messages is cut to this many bytes (including "..." and NUL). */
enum { SHOWN_LEN = 48 };

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...) PRINTF_LIKE(4, 5);

/* Writes "path: message" into err and returns -1, so callers can `return fail(...)`. */
static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    va_list ap;
    int n;

    if (!err || errlen == 0)
        return -1;
    n = snprintf(err, errlen, "%s: ", path ? path : "(null)");
    if (n < 0) {
        err[0] = '\0';
        return -1;
    }
    if ((size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Copies n bytes of file text into buf (SHOWN_LEN bytes) so they are safe to
   print: non-printable bytes become '?' and long text is cut with "...". */
static const char *sanitize(const char *s, size_t n, char *buf) {
    size_t i, k = 0;

    for (i = 0; i < n && k < SHOWN_LEN - 4; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (i < n) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

/* Number of elements in a shape; -1 if it does not fit in a size_t. */
static int element_count(int ndim, const size_t *shape, size_t *count) {
    size_t c = 1;
    int i;

    /* Any zero dimension makes the array empty, however big the others are. */
    for (i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            *count = 0;
            return 0;
        }
    }
    for (i = 0; i < ndim; i++) {
        if (c > SIZE_MAX / shape[i])
            return -1;
        c *= shape[i];
    }
    *count = c;
    return 0;
}

const char *kg_npy_shape_str(int ndim, const size_t *shape, char *buf, size_t buflen) {
    size_t n = 0;
    int i;

    if (!buf || buflen == 0)
        return buf;
    buf[0] = '\0';
    if (ndim > 0 && !shape)
        return buf;
    /* snprintf returns the length it wanted; stop once the buffer is full. */
    n += (size_t)snprintf(buf, buflen, "[");
    for (i = 0; i < ndim && n < buflen; i++)
        n += (size_t)snprintf(buf + n, buflen - n, i ? ", %zu" : "%zu", shape[i]);
    if (n < buflen)
        snprintf(buf + n, buflen - n, "]");
    return buf;
}

void kg_npy_free(kg_npy *t) {
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

/*
 * Header parser. The header is a Python dict literal such as
 *   {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
 * We parse just that grammar, never reading past ps->end.
 */
typedef struct {
    const char *p;      /* next unread byte */
    const char *end;    /* one past the last header byte */
    const char *path;   /* for messages */
    char *err;
    size_t errlen;
} Parser;

static int peek(const Parser *ps) {
    return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

static void skip_space(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* "malformed header: expected <what>, found '<next bytes>'" */
static int syntax_error(Parser *ps, const char *what) {
    char shown[SHOWN_LEN];
    size_t left = (size_t)(ps->end - ps->p);

    if (left == 0)
        return fail(ps->err, ps->errlen, ps->path,
                    "malformed header: expected %s, found end of header", what);
    /* A dozen bytes of context is enough to see what went wrong. */
    return fail(ps->err, ps->errlen, ps->path, "malformed header: expected %s, found '%s%s'", what,
                sanitize(ps->p, left < 12 ? left : 12, shown), left > 12 ? "..." : "");
}

static int expect_char(Parser *ps, char c, const char *what) {
    if (peek(ps) != (unsigned char)c)
        return syntax_error(ps, what);
    ps->p++;
    return 0;
}

/* A quoted string with ' or " and no escapes (numpy never writes any). */
static int parse_string(Parser *ps, const char **s, size_t *n, const char *what) {
    int q = peek(ps);
    const char *start;

    if (q != '\'' && q != '"')
        return syntax_error(ps, what);
    start = ++ps->p;
    while (ps->p < ps->end && *ps->p != q && *ps->p != '\n')
        ps->p++;
    if (ps->p >= ps->end || *ps->p != q)
        return fail(ps->err, ps->errlen, ps->path, "malformed header: unterminated string");
    *s = start;
    *n = (size_t)(ps->p - start);
    ps->p++;
    return 0;
}

static int same(const char *s, size_t n, const char *lit) {
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static int parse_descr(Parser *ps, kg_npy *out) {
    char shown[SHOWN_LEN];
    const char *s;
    size_t n;

    /* A list here means a structured dtype, e.g. [('x', '<f4'), ('y', '<f4')]. */
    if (peek(ps) == '[')
        return fail(ps->err, ps->errlen, ps->path,
                    "structured dtypes are not supported (expected '<f4' or '<f8')");
    if (parse_string(ps, &s, &n, "a dtype string for 'descr'") != 0)
        return -1;
    if (same(s, n, "<f4"))
        out->dtype = KG_NPY_F32;
    else if (same(s, n, "<f8"))
        out->dtype = KG_NPY_F64;
    else
        return fail(ps->err, ps->errlen, ps->path,
                    "dtype '%s' is not supported (expected '<f4' or '<f8')", sanitize(s, n, shown));
    return 0;
}

/* Not <ctype.h>: its answer depends on the locale and it is undefined for negative chars. */
static int is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int parse_fortran_order(Parser *ps) {
    char shown[SHOWN_LEN];
    const char *s = ps->p;
    size_t n;

    while (ps->p < ps->end && is_word_char(*ps->p))
        ps->p++;
    n = (size_t)(ps->p - s);
    if (same(s, n, "False"))
        return 0;
    if (same(s, n, "True"))
        return fail(ps->err, ps->errlen, ps->path, "fortran_order arrays are not supported");
    ps->p = s;
    if (n == 0)
        return syntax_error(ps, "True or False for 'fortran_order'");
    return fail(ps->err, ps->errlen, ps->path,
                "malformed header: 'fortran_order' must be True or False, found '%s'",
                sanitize(s, n, shown));
}

static int parse_dim(Parser *ps, size_t *dim) {
    size_t v = 0;
    int c = peek(ps);

    if (c == '-')
        return fail(ps->err, ps->errlen, ps->path,
                    "malformed header: 'shape' has a negative dimension");
    if (c < '0' || c > '9')
        return syntax_error(ps, "a non-negative integer in 'shape'");
    while ((c = peek(ps)) >= '0' && c <= '9') {
        size_t d = (size_t)(c - '0');
        if (v > (SIZE_MAX - d) / 10)
            return fail(ps->err, ps->errlen, ps->path,
                        "malformed header: 'shape' dimension is too large");
        v = v * 10 + d;
        ps->p++;
    }
    /* numpy under Python 2 wrote long integers as 3L. */
    if (peek(ps) == 'L')
        ps->p++;
    *dim = v;
    return 0;
}

/* A Python tuple: (), (3,), (2, 3) or (2, 3,). Note (3) is an int, not a tuple. */
static int parse_shape(Parser *ps, kg_npy *out) {
    int ndim = 0, comma = 0;

    if (expect_char(ps, '(', "a tuple like (2, 3) for 'shape'") != 0)
        return -1;
    skip_space(ps);
    while (peek(ps) != ')') {
        if (ndim == KG_NPY_MAXDIM)
            return fail(ps->err, ps->errlen, ps->path,
                        "'shape' has more than %d dimensions", KG_NPY_MAXDIM);
        if (parse_dim(ps, &out->shape[ndim]) != 0)
            return -1;
        ndim++;
        skip_space(ps);
        comma = peek(ps) == ',';
        if (comma) {
            ps->p++;
            skip_space(ps);
        } else if (peek(ps) != ')') {
            return syntax_error(ps, "',' or ')' in 'shape'");
        }
    }
    ps->p++;
    if (ndim == 1 && !comma)
        return fail(ps->err, ps->errlen, ps->path,
                    "malformed header: 'shape' must be a tuple like (3,) or (2, 3)");
    out->ndim = ndim;
    return 0;
}

static int parse_header(Parser *ps, kg_npy *out) {
    int have_descr = 0, have_order = 0, have_shape = 0;
    char shown[SHOWN_LEN];
    const char *key;
    size_t keylen;
    int rc;

    skip_space(ps);
    if (expect_char(ps, '{', "'{' at the start of the header") != 0)
        return -1;
    for (;;) {
        skip_space(ps);
        if (peek(ps) == '}')
            break;
        if (parse_string(ps, &key, &keylen, "a quoted key or '}'") != 0)
            return -1;
        skip_space(ps);
        if (expect_char(ps, ':', "':' after a key") != 0)
            return -1;
        skip_space(ps);

        if (same(key, keylen, "descr") && !have_descr) {
            have_descr = 1;
            rc = parse_descr(ps, out);
        } else if (same(key, keylen, "fortran_order") && !have_order) {
            have_order = 1;
            rc = parse_fortran_order(ps);
        } else if (same(key, keylen, "shape") && !have_shape) {
            have_shape = 1;
            rc = parse_shape(ps, out);
        } else if (same(key, keylen, "descr") || same(key, keylen, "fortran_order") ||
                   same(key, keylen, "shape")) {
            rc = fail(ps->err, ps->errlen, ps->path, "malformed header: duplicate key '%s'",
                      sanitize(key, keylen, shown));
        } else {
            rc = fail(ps->err, ps->errlen, ps->path, "malformed header: unexpected key '%s'",
                      sanitize(key, keylen, shown));
        }
        if (rc != 0)
            return -1;

        skip_space(ps);
        if (peek(ps) == ',') {
            ps->p++;
            continue;
        }
        if (peek(ps) != '}')
            return syntax_error(ps, "',' or '}' after a value");
        break;
    }
    ps->p++;
    skip_space(ps);   /* numpy pads the header with spaces and a final newline */
    if (ps->p != ps->end)
        return syntax_error(ps, "only padding after '}'");
    if (!have_descr)
        return fail(ps->err, ps->errlen, ps->path, "malformed header: missing key 'descr'");
    if (!have_order)
        return fail(ps->err, ps->errlen, ps->path, "malformed header: missing key 'fortran_order'");
    if (!have_shape)
        return fail(ps->err, ps->errlen, ps->path, "malformed header: missing key 'shape'");
    return 0;
}

/* The message for a failed read: the system's reason if there is one, else "truncated". */
static int read_failed(FILE *f, const char *path, char *err, size_t errlen, const char *what,
                       size_t expected, size_t found) {
    if (ferror(f))
        return fail(err, errlen, path, "read error: %s", strerror(errno));
    return fail(err, errlen, path, "%s: expected %zu %s bytes, found %zu",
                strcmp(what, "header") == 0 ? "truncated header" : "truncated", expected, what, found);
}

/* The header matches what the caller expects (or the caller expects nothing). */
static int header_matches(const kg_npy *t, const kg_npy *want) {
    int i;

    if (!want)
        return 1;
    if (t->dtype != want->dtype || t->ndim != want->ndim)
        return 0;
    for (i = 0; i < t->ndim; i++)
        if (t->shape[i] != want->shape[i])
            return 0;
    return 1;
}

int kg_npy_read(const char *path, kg_npy *out, char *err, size_t errlen) {
    return kg_npy_read_expect(path, NULL, out, err, errlen) == 0 ? 0 : -1;
}

int kg_npy_read_expect(const char *path, const kg_npy *want, kg_npy *out, char *err, size_t errlen) {
    unsigned char prefix[12];   /* magic, version, header length (2 or 4 bytes) */
    char shape_buf[256], chunk[4096];
    kg_npy t;
    FILE *f = NULL;
    char *header = NULL;
    struct stat st;
    Parser ps;
    size_t got, lensize, hlen, offset, bytes;
    uintmax_t extra;
    int fd, major, minor;

    if (err && errlen > 0)
        err[0] = '\0';
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return fail(err, errlen, path, "kg_npy_read: missing path or output");
    memset(&t, 0, sizeof t);

    /* Regular files only: a FIFO or a device could block forever or never end, and only a
       regular file's size can be checked against its header before anything is allocated.
       O_NONBLOCK keeps open() itself from waiting for a FIFO's writer. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, path, "cannot open: %s", strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fstat(fd, &st) != 0)
            fail(err, errlen, path, "cannot open: %s", strerror(errno));
        else if (S_ISDIR(st.st_mode))
            fail(err, errlen, path, "cannot open: %s", strerror(EISDIR));
        else
            fail(err, errlen, path, "not a regular file");
        close(fd);
        return -1;
    }
    f = fdopen(fd, "rb");
    if (!f) {
        fail(err, errlen, path, "cannot open: %s", strerror(errno));
        close(fd);
        return -1;
    }

    /* Magic string "\x93NUMPY", then the major and minor version bytes. */
    got = fread(prefix, 1, 8, f);
    if (got < 8 && ferror(f)) {
        fail(err, errlen, path, "read error: %s", strerror(errno));
        goto error;
    }
    if (got == 0) {
        fail(err, errlen, path, "not a .npy file (file is empty)");
        goto error;
    }
    if (memcmp(prefix, MAGIC, got < 6 ? got : 6) != 0) {
        fail(err, errlen, path, "not a .npy file (bad magic)");
        goto error;
    }
    if (got < 8) {
        fail(err, errlen, path, "truncated header: file is only %zu bytes long", got);
        goto error;
    }
    major = prefix[6];
    minor = prefix[7];
    if (major < 1 || major > 3 || minor != 0) {
        fail(err, errlen, path, "unsupported .npy format version %d.%d (expected 1.0, 2.0 or 3.0)",
             major, minor);
        goto error;
    }

    /* Header length: 2 bytes little-endian in version 1, 4 bytes in versions 2 and 3. */
    lensize = major == 1 ? 2 : 4;
    got = fread(prefix + 8, 1, lensize, f);
    if (got < lensize) {
        if (ferror(f))
            fail(err, errlen, path, "read error: %s", strerror(errno));
        else
            fail(err, errlen, path, "truncated header: file is only %zu bytes long", 8 + got);
        goto error;
    }
    hlen = (size_t)prefix[8] | (size_t)prefix[9] << 8;
    if (lensize == 4)
        hlen |= (size_t)prefix[10] << 16 | (size_t)prefix[11] << 24;
    if (hlen > MAX_HEADER_LEN) {
        fail(err, errlen, path, "header length %zu is too large (limit is %zu bytes)", hlen,
             MAX_HEADER_LEN);
        goto error;
    }
    header = malloc(hlen > 0 ? hlen : 1);
    if (!header) {
        fail(err, errlen, path, "out of memory reading a %zu byte header", hlen);
        goto error;
    }
    got = fread(header, 1, hlen, f);
    if (got < hlen) {
        read_failed(f, path, err, errlen, "header", hlen, got);
        goto error;
    }
    offset = 8 + lensize + hlen;

    ps.p = header;
    ps.end = header + hlen;
    ps.path = path;
    ps.err = err;
    ps.errlen = errlen;
    if (parse_header(&ps, &t) != 0)
        goto error;
    free(header);
    header = NULL;

    if (element_count(t.ndim, t.shape, &t.count) != 0 || t.count > SIZE_MAX / (size_t)t.dtype) {
        fail(err, errlen, path, "shape %s is too large (its size in bytes overflows)",
             kg_npy_shape_str(t.ndim, t.shape, shape_buf, sizeof shape_buf));
        goto error;
    }
    bytes = t.count * (size_t)t.dtype;

    /* The caller's expectation is checked before any data is read or allocated. */
    if (!header_matches(&t, want)) {
        fclose(f);
        *out = t;
        return 1;
    }
    /* Check the file size before allocating, so a hostile shape in a small
       file cannot make us allocate a huge buffer. */
    {
        uintmax_t size = (uintmax_t)st.st_size;
        uintmax_t have = size > offset ? size - offset : 0;
        if (have < bytes) {
            fail(err, errlen, path, "truncated: expected %zu data bytes, found %ju", bytes, have);
            goto error;
        }
        if (have > bytes) {
            fail(err, errlen, path, "%ju trailing bytes after the data", have - bytes);
            goto error;
        }
    }

    t.data = malloc(bytes > 0 ? bytes : 1);   /* never NULL on success, even when empty */
    if (!t.data) {
        fail(err, errlen, path, "out of memory reading %zu data bytes", bytes);
        goto error;
    }
    got = fread(t.data, 1, bytes, f);
    if (got < bytes) {
        read_failed(f, path, err, errlen, "data", bytes, got);
        goto error;
    }

    /* Anything left over means the header does not describe the file (or it
       is a pipe we could not size up front). */
    extra = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        extra += got;
    if (ferror(f)) {
        fail(err, errlen, path, "read error: %s", strerror(errno));
        goto error;
    }
    if (extra > 0) {
        fail(err, errlen, path, "%ju trailing bytes after the data", extra);
        goto error;
    }

    fclose(f);
    *out = t;
    return 0;

error:
    free(header);
    free(t.data);
    if (f)
        fclose(f);
    return -1;
}

/* Longest header: 51 bytes up to '(' + 8 dims * 22 + 5 closing + 20 spare + 64 padding + 1 = 317. */
enum { HEADER_CAP = 512 };

/* Builds the header text exactly as np.save does, padding included; returns its length. */
static size_t build_header(char *h, kg_npy_dtype dtype, int ndim, const size_t *shape) {
    size_t n, pad;
    int i;

    n = (size_t)snprintf(h, HEADER_CAP, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                         dtype == KG_NPY_F32 ? "<f4" : "<f8");
    for (i = 0; i < ndim; i++)
        n += (size_t)snprintf(h + n, HEADER_CAP - n, i ? ", %zu" : "%zu", shape[i]);
    /* A 1-tuple needs its trailing comma: (3,) */
    n += (size_t)snprintf(h + n, HEADER_CAP - n, "%s, }", ndim == 1 ? ",)" : ")");

    /* numpy leaves room for the first dimension to grow to 21 digits in place. */
    if (ndim > 0) {
        size_t digits = (size_t)snprintf(NULL, 0, "%zu", shape[0]);
        memset(h + n, ' ', 21 - digits);
        n += 21 - digits;
    }

    /* Pad with spaces and end with '\n' so that magic (6) + version (2) +
       length (2) + header is a multiple of 64; numpy always pads at least one. */
    pad = 64 - (10 + n + 1) % 64;
    memset(h + n, ' ', pad);
    n += pad;
    h[n++] = '\n';
    return n;
}

int kg_npy_write(const char *path, kg_npy_dtype dtype, int ndim, const size_t *shape,
                 const void *data, char *err, size_t errlen) {
    struct stat st;
    int is_file, saved_errno;
    FILE *f;

    if (err && errlen > 0)
        err[0] = '\0';
    if (!path)
        return fail(err, errlen, path, "kg_npy_write: missing path");
    if (kg_npy_fwrite(NULL, dtype, ndim, shape, data, path, err, errlen) != 0)
        return -1; /* the arguments are checked before anything is created */
    f = fopen(path, "wb");
    if (!f)
        return fail(err, errlen, path, "cannot create: %s", strerror(errno));
    /* Only a regular file is ours to delete: a failed write to a device such
       as /dev/full must not unlink it. */
    is_file = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);

    if (kg_npy_fwrite(f, dtype, ndim, shape, data, path, err, errlen) != 0) {
        saved_errno = errno;
        fclose(f);
        goto failed;
    }
    /* Buffered data hits the disk here, so this is where "disk full" usually shows up. */
    if (fclose(f) != 0) {
        saved_errno = errno;
        goto failed;
    }
    return 0;

failed:
    if (is_file)
        remove(path);
    return fail(err, errlen, path, "write failed: %s", strerror(saved_errno));
}

int kg_npy_fwrite(FILE *f, kg_npy_dtype dtype, int ndim, const size_t *shape, const void *data,
                  const char *path, char *err, size_t errlen) {
    char header[HEADER_CAP], shape_buf[256];
    unsigned char prefix[10];
    size_t hlen, count, bytes;

    if (dtype != KG_NPY_F32 && dtype != KG_NPY_F64)
        return fail(err, errlen, path, "cannot write element size %d (expected 4 or 8)", (int)dtype);
    if (ndim < 0 || ndim > KG_NPY_MAXDIM)
        return fail(err, errlen, path, "cannot write %d dimensions (expected 0 to %d)", ndim,
                    KG_NPY_MAXDIM);
    if (ndim > 0 && !shape)
        return fail(err, errlen, path, "cannot write: no shape given");
    if (element_count(ndim, shape, &count) != 0 || count > SIZE_MAX / (size_t)dtype)
        return fail(err, errlen, path, "cannot write: shape %s is too large",
                    kg_npy_shape_str(ndim, shape, shape_buf, sizeof shape_buf));
    bytes = count * (size_t)dtype;
    if (bytes > 0 && !data)
        return fail(err, errlen, path, "cannot write: no data given");

    hlen = build_header(header, dtype, ndim, shape);
    memcpy(prefix, MAGIC, 6);
    prefix[6] = 1;   /* version 1.0: the header is always far below 64 KiB */
    prefix[7] = 0;
    prefix[8] = (unsigned char)(hlen & 0xff);
    prefix[9] = (unsigned char)(hlen >> 8);
    if (!f)
        return 0;
    if (fwrite(prefix, 1, sizeof prefix, f) != sizeof prefix || fwrite(header, 1, hlen, f) != hlen ||
        (bytes > 0 && fwrite(data, 1, bytes, f) != bytes))
        return fail(err, errlen, path, "write failed: %s", strerror(errno));
    return 0;
}
