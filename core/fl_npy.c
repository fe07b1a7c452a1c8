/* NumPy .npy files. Layout: the magic "\x93NUMPY", a major and minor version
 * byte, the header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and
 * 3.0), a Python dict literal padded with spaces and ended by '\n', then the
 * raw array data. */
#include "fl_npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
#define NPY_NAME_MAX 32

/* ---- bytes ---- */

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char first;
  memcpy(&first, &one, 1);
  return first == 1;
}

static void swap_bytes(void *buf, size_t n, size_t width) {
  unsigned char *p = buf;
  for (size_t i = 0; i < n; i++, p += width) {
    for (size_t a = 0, b = width - 1; a < b; a++, b--) {
      unsigned char c = p[a];
      p[a] = p[b];
      p[b] = c;
    }
  }
}

static uint32_t load_le(const unsigned char *p, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static void store_le(unsigned char *p, uint32_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* ---- header dict parsing ---- */

typedef struct npy_header {
  char descr[NPY_NAME_MAX];
  int fortran;
  int ndim;
  int64_t shape[FL_MAX_DIMS];
} npy_header;

typedef struct npy_parser {
  const char *p, *end;
  char err[256];
} npy_parser;

static int parse_fail(npy_parser *ps, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ps->err, sizeof ps->err, fmt, ap);
  va_end(ap);
  return -1;
}

static void skip_ws(npy_parser *ps) {
  while (ps->p < ps->end && *ps->p && strchr(" \t\n\r\f\v", *ps->p)) ps->p++;
}

static int accept(npy_parser *ps, char c) {
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return 1;
  }
  return 0;
}

static int peek(npy_parser *ps) {
  skip_ws(ps);
  return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

/* Reads a quoted string into out, keeping at most cap-1 characters; a longer
 * one is cut short, which no key or supported descr needs. */
static int parse_string(npy_parser *ps, char *out, size_t cap) {
  int quote = peek(ps);
  if (quote != '\'' && quote != '"')
    return parse_fail(ps, "malformed header: expected a quoted string");
  size_t n = 0;
  for (ps->p++; ps->p < ps->end && *ps->p != quote; ps->p++) {
    if (*ps->p == '\\' && ps->p + 1 < ps->end) ps->p++;
    if (n + 1 < cap) out[n++] = *ps->p;
  }
  if (ps->p == ps->end) return parse_fail(ps, "malformed header: unterminated string");
  ps->p++;
  out[n] = '\0';
  return 0;
}

static int is_word_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '+' || c == '-';
}

static size_t word_length(const npy_parser *ps) {
  const char *q = ps->p;
  while (q < ps->end && is_word_char((unsigned char)*q)) q++;
  return (size_t)(q - ps->p);
}

static int parse_bool(npy_parser *ps, int *v) {
  skip_ws(ps);
  size_t n = word_length(ps);
  if (n == 4 && memcmp(ps->p, "True", 4) == 0) *v = 1;
  else if (n == 5 && memcmp(ps->p, "False", 5) == 0) *v = 0;
  else return parse_fail(ps, "malformed header: 'fortran_order' must be True or False");
  ps->p += n;
  return 0;
}

/* One size of the shape tuple; Python 2 era files may write it as "3L". */
static int parse_dim(npy_parser *ps, int64_t *v) {
  skip_ws(ps);
  int negative = ps->p < ps->end && *ps->p == '-';
  if (ps->p < ps->end && (*ps->p == '-' || *ps->p == '+')) ps->p++;
  const char *start = ps->p;
  int64_t x = 0;
  for (; ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9'; ps->p++) {
    int d = *ps->p - '0';
    if (x > (INT64_MAX - d) / 10) return parse_fail(ps, "shape product overflow: a size is too large");
    x = x * 10 + d;
  }
  if (ps->p == start) return parse_fail(ps, "malformed header: expected an integer in 'shape'");
  if (ps->p < ps->end && (*ps->p == 'L' || *ps->p == 'l')) ps->p++;
  if (negative && x != 0) return parse_fail(ps, "negative size -%lld in shape", (long long)x);
  *v = x;
  return 0;
}

/* (), (5,), (2, 3) and (2, 3,); sizes past FL_MAX_DIMS are counted, not kept. */
static int parse_shape(npy_parser *ps, npy_header *h) {
  if (!accept(ps, '(')) return parse_fail(ps, "malformed header: 'shape' must be a tuple");
  int n = 0;
  while (!accept(ps, ')')) {
    int64_t size = 0;
    if (parse_dim(ps, &size) != 0) return -1;
    if (n < FL_MAX_DIMS) h->shape[n] = size;
    n++;
    if (!accept(ps, ',') && peek(ps) != ')')
      return parse_fail(ps, "malformed header: expected ',' or ')' in 'shape'");
  }
  if (n > FL_MAX_DIMS) return parse_fail(ps, "too many dims: %d (at most %d)", n, FL_MAX_DIMS);
  h->ndim = n;
  return 0;
}

static char closer_of(int c) {
  return c == '(' ? ')' : c == '[' ? ']' : c == '{' ? '}' : 0;
}

/* Skips a bracketed value, checking that brackets pair up. */
static int skip_brackets(npy_parser *ps) {
  char scratch[NPY_NAME_MAX], closers[32];
  int depth = 0;
  do {
    int c = peek(ps);
    if (c == '\'' || c == '"') {
      if (parse_string(ps, scratch, sizeof scratch) != 0) return -1;
      continue;
    }
    if (c == -1) return parse_fail(ps, "malformed header: unclosed bracket");
    if (closer_of(c)) {
      if (depth == (int)sizeof closers) return parse_fail(ps, "malformed header: nested too deeply");
      closers[depth++] = closer_of(c);
    } else if (c == ')' || c == ']' || c == '}') {
      if (c != closers[depth - 1]) return parse_fail(ps, "malformed header: mismatched '%c'", c);
      depth--;
    }
    ps->p++;
  } while (depth > 0);
  return 0;
}

/* Skips the value of a key this reader does not use. */
static int skip_value(npy_parser *ps) {
  char scratch[NPY_NAME_MAX];
  int c = peek(ps);
  if (c == '\'' || c == '"') return parse_string(ps, scratch, sizeof scratch);
  if (closer_of(c)) return skip_brackets(ps);
  size_t n = word_length(ps);
  if (n == 0) return parse_fail(ps, "malformed header: expected a value");
  ps->p += n;
  return 0;
}

enum { SEEN_DESCR = 1, SEEN_FORTRAN = 2, SEEN_SHAPE = 4 };

static int parse_entry(npy_parser *ps, npy_header *h, int *seen) {
  char key[NPY_NAME_MAX];
  if (parse_string(ps, key, sizeof key) != 0) return -1;
  if (!accept(ps, ':')) return parse_fail(ps, "malformed header: expected ':' after '%s'", key);
  if (strcmp(key, "descr") == 0) {
    *seen |= SEEN_DESCR;
    if (peek(ps) == '[') return parse_fail(ps, "structured arrays (a list 'descr') are not supported");
    return parse_string(ps, h->descr, sizeof h->descr);
  }
  if (strcmp(key, "fortran_order") == 0) {
    *seen |= SEEN_FORTRAN;
    return parse_bool(ps, &h->fortran);
  }
  if (strcmp(key, "shape") == 0) {
    *seen |= SEEN_SHAPE;
    return parse_shape(ps, h);
  }
  return skip_value(ps);
}

static int parse_header(npy_parser *ps, npy_header *h) {
  int seen = 0;
  if (!accept(ps, '{')) return parse_fail(ps, "malformed header: expected '{'");
  while (!accept(ps, '}')) {
    if (parse_entry(ps, h, &seen) != 0) return -1;
    if (!accept(ps, ',') && peek(ps) != '}')
      return parse_fail(ps, "malformed header: expected ',' or '}'");
  }
  skip_ws(ps);
  if (ps->p != ps->end) return parse_fail(ps, "malformed header: unexpected text after '}'");
  const char *missing = !(seen & SEEN_DESCR)     ? "descr"
                        : !(seen & SEEN_FORTRAN) ? "fortran_order"
                        : !(seen & SEEN_SHAPE)   ? "shape"
                                                 : NULL;
  if (missing) return parse_fail(ps, "header is missing the '%s' key", missing);
  return 0;
}

/* ---- descr ---- */

/* How the file stores elements and what tensor they become. direct: the
 * stored bytes (once in host byte order) already are the tensor's bytes. */
typedef struct npy_layout {
  char kind;
  size_t width;
  int swap;
  fl_dtype dtype;
  int direct;
} npy_layout;

static const npy_layout npy_types[] = {
    {'f', 4, 0, FL_F32, 1}, {'f', 2, 0, FL_F16, 1}, {'f', 8, 0, FL_F32, 0},
    {'i', 4, 0, FL_I32, 1}, {'i', 8, 0, FL_I64, 1}, {'b', 1, 0, FL_BOOL, 1},
    {'i', 1, 0, FL_I32, 0}, {'i', 2, 0, FL_I32, 0}, {'u', 1, 0, FL_I32, 0},
    {'u', 2, 0, FL_I32, 0}, {'u', 4, 0, FL_I64, 0},
};

static void describe_type(char kind, long size, char *buf, size_t n) {
  const char *family = kind == 'f' ? "float" : kind == 'c' ? "complex" : kind == 'i' ? "int"
                     : kind == 'u' ? "uint" : NULL;
  if (family && size > 0) {
    snprintf(buf, n, "%s%ld", family, size * 8);
    return;
  }
  const char *name = kind == 'b' ? "bool" : kind == 'U' ? "unicode string"
                   : kind == 'S' || kind == 'a' ? "byte string" : kind == 'O' ? "Python object"
                   : kind == 'M' ? "datetime64" : kind == 'm' ? "timedelta64"
                   : kind == 'V' ? "void" : "unknown type";
  snprintf(buf, n, "%s", name);
}

static int resolve_descr(const char *descr, const fl_npy_load_opts *o, npy_layout *out,
                         char *err, size_t errn) {
  int has_order = descr[0] && strchr("<>=|", descr[0]);
  char order = has_order ? descr[0] : '=';
  const char *rest = descr + has_order;
  char kind = rest[0];
  long size = 0;
  const char *q = kind ? rest + 1 : rest;
  for (; *q >= '0' && *q <= '9' && size < 1000; q++) size = size * 10 + (*q - '0');
  int found = -1;
  for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
    if (npy_types[i].kind == kind && (long)npy_types[i].width == size) found = (int)i;
  if (found < 0 || *q != '\0' || (order == '|' && size > 1)) {
    char name[48];
    describe_type(kind, size, name, sizeof name);
    snprintf(err, errn, "'%s' (%s) is not supported", descr, name);
    return -1;
  }
  *out = npy_types[found];
  int file_big = order == '>' || (order == '=' && !host_is_little_endian());
  out->swap = size > 1 && file_big == host_is_little_endian();
  if (kind == 'u' && size == 2 && o && o->raw_as == FL_BF16) {
    out->dtype = FL_BF16;
    out->direct = 1;
  }
  return 0;
}

/* ---- reading ---- */

/* Reads up to n bytes; *got says how many came. -1 only on a read error. */
static int read_some(FILE *f, void *buf, size_t n, size_t *got) {
  *got = n ? fread(buf, 1, n, f) : 0;
  return *got < n && ferror(f) ? -1 : 0;
}

static fl_status read_failed(const char *path, fl_err *e) {
  return fl_fail(e, FL_EIO, "%s: read failed: %s", path, strerror(errno));
}

/* Bytes from the current position to the end, or -1 where unknown (a pipe). */
static int64_t bytes_left(FILE *f) {
  long here = ftell(f);
  if (here < 0 || fseek(f, 0, SEEK_END) != 0) return -1;
  long end = ftell(f);
  if (fseek(f, here, SEEK_SET) != 0 || end < here) return -1;
  return (int64_t)(end - here);
}

static fl_status read_prefix(FILE *f, const char *path, size_t *header_len, fl_err *e) {
  unsigned char pre[NPY_MAGIC_LEN + 2 + 4];
  size_t got;
  if (read_some(f, pre, NPY_MAGIC_LEN + 2, &got) != 0) return read_failed(path, e);
  if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
    return fl_fail(e, FL_EFORMAT, "%s: bad magic (not a .npy file)", path);
  if (got < NPY_MAGIC_LEN + 2)
    return fl_fail(e, FL_EFORMAT, "%s: truncated header: file ends inside the version", path);
  int major = pre[NPY_MAGIC_LEN], minor = pre[NPY_MAGIC_LEN + 1];
  if (major < 1 || major > 3 || minor != 0)
    return fl_fail(e, FL_EFORMAT, "%s: unsupported .npy version %d.%d (expected 1.0, 2.0 or 3.0)",
                   path, major, minor);
  int len_bytes = major == 1 ? 2 : 4;
  if (read_some(f, pre, (size_t)len_bytes, &got) != 0) return read_failed(path, e);
  if (got < (size_t)len_bytes)
    return fl_fail(e, FL_EFORMAT, "%s: truncated header: file ends inside the header length", path);
  *header_len = load_le(pre, len_bytes);
  return FL_OK;
}

static fl_status read_header(FILE *f, const char *path, npy_header *h, fl_err *e) {
  size_t len = 0, got;
  fl_status s = read_prefix(f, path, &len, e);
  if (s != FL_OK) return s;
  int64_t left = bytes_left(f);
  if (left >= 0 && (uint64_t)left < len)
    return fl_fail(e, FL_EFORMAT, "%s: truncated header: expected %zu bytes, found %lld", path,
                   len, (long long)left);
  char *text = malloc(len + 1);
  if (!text) return fl_fail(e, FL_ENOMEM, "%s: out of memory for a %zu-byte header", path, len);
  if (read_some(f, text, len, &got) != 0) {
    free(text);
    return read_failed(path, e);
  }
  npy_parser ps = {text, text + got, {0}};
  memset(h, 0, sizeof *h);
  if (got < len)
    s = fl_fail(e, FL_EFORMAT, "%s: truncated header: expected %zu bytes, found %zu", path, len, got);
  else if (parse_header(&ps, h) != 0)
    s = fl_fail(e, FL_EFORMAT, "%s: %s", path, ps.err);
  free(text);
  return s;
}

static fl_status data_size(const char *path, const npy_header *h, size_t width, size_t *bytes,
                           fl_err *e) {
  int64_t numel = 1;
  for (int i = 0; i < h->ndim; i++) {
    if (h->shape[i] != 0 && numel > INT64_MAX / h->shape[i])
      return fl_fail(e, FL_EFORMAT, "%s: shape product overflow", path);
    numel *= h->shape[i];
  }
  if ((uint64_t)numel > SIZE_MAX / width || numel > INT64_MAX / (int64_t)width)
    return fl_fail(e, FL_EFORMAT, "%s: shape product overflow: %lld elements of %zu bytes", path,
                   (long long)numel, width);
  *bytes = (size_t)numel * width;
  return FL_OK;
}

static int64_t stored_int(const void *src, char kind, size_t width, size_t i) {
  if (kind == 'u' && width == 1) return ((const uint8_t *)src)[i];
  if (kind == 'u' && width == 2) return ((const uint16_t *)src)[i];
  if (kind == 'u' && width == 4) return ((const uint32_t *)src)[i];
  if (width == 1) return ((const int8_t *)src)[i];
  return ((const int16_t *)src)[i];
}

/* Converts the kinds that are not stored as their tensor dtype. */
static void widen(void *dst, fl_dtype dt, const void *src, const npy_layout *L, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (L->kind == 'f') fl_elem_set_f64(dst, dt, i, ((const double *)src)[i]);
    else fl_elem_set_i64(dst, dt, i, stored_int(src, L->kind, L->width, i));
  }
}

/* Reorders elements stored with the first index fastest into C order. */
static void fortran_to_c(unsigned char *dst, const unsigned char *src, const fl_tensor *t,
                         size_t elem) {
  int64_t idx[FL_MAX_DIMS] = {0}, stride[FL_MAX_DIMS], s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    stride[d] = s;
    s *= t->shape[d];
  }
  int64_t off = 0;
  for (int64_t k = 0; k < t->numel; k++) {
    memcpy(dst + (size_t)off * elem, src + (size_t)k * elem, elem);
    for (int d = 0; d < t->ndim; d++) {
      off += stride[d];
      if (++idx[d] < t->shape[d]) break;
      off -= stride[d] * t->shape[d];
      idx[d] = 0;
    }
  }
}

static fl_status reorder_fortran(const char *path, fl_tensor *t, fl_err *e) {
  size_t n = fl_tensor_nbytes(t);
  unsigned char *tmp = malloc(n);
  if (!tmp) return fl_fail(e, FL_ENOMEM, "%s: out of memory reordering %zu bytes", path, n);
  fortran_to_c(tmp, t->host, t, fl_dtype_size(t->dtype));
  memcpy(t->host, tmp, n);
  free(tmp);
  return FL_OK;
}

/* Fills t, already allocated, from the data that follows the header. */
static fl_status read_data(FILE *f, const char *path, const npy_layout *L, size_t bytes,
                           fl_tensor *t, fl_err *e) {
  if (bytes == 0) return FL_OK;
  void *raw = L->direct ? t->host : malloc(bytes);
  if (!raw) return fl_fail(e, FL_ENOMEM, "%s: out of memory for %zu bytes of data", path, bytes);
  size_t got;
  fl_status s = FL_OK;
  if (read_some(f, raw, bytes, &got) != 0) s = read_failed(path, e);
  else if (got < bytes)
    s = fl_fail(e, FL_EFORMAT, "%s: truncated data: expected %zu bytes, found %zu", path, bytes, got);
  if (s == FL_OK) {
    size_t n = (size_t)t->numel;
    if (L->swap) swap_bytes(raw, n, L->width);
    if (!L->direct) widen(t->host, t->dtype, raw, L, n);
    else if (L->kind == 'b')
      for (size_t i = 0; i < n; i++) ((unsigned char *)raw)[i] = ((unsigned char *)raw)[i] != 0;
  }
  if (!L->direct) free(raw);
  return s;
}

/* Puts path in front of a message from a call that does not know it. */
static fl_status name_path(const char *path, fl_status s, fl_err *e) {
  if (!e) return s;
  char msg[sizeof e->msg];
  memcpy(msg, e->msg, sizeof msg);
  return fl_fail(e, s, "%s: %s", path, msg);
}

static fl_status load_body(FILE *f, const char *path, const npy_header *h, const npy_layout *L,
                           fl_tensor *out, fl_err *e) {
  size_t bytes = 0;
  fl_status s = data_size(path, h, L->width, &bytes, e);
  if (s != FL_OK) return s;
  int64_t left = bytes_left(f);
  if (left >= 0 && (uint64_t)left < bytes)
    return fl_fail(e, FL_EFORMAT, "%s: truncated data: expected %zu bytes, found %lld", path,
                   bytes, (long long)left);
  fl_tensor t;
  fl_device cpu = {FL_CPU, 0};
  s = fl_tensor_alloc(&t, L->dtype, cpu, h->ndim, h->shape, e);
  if (s != FL_OK) return name_path(path, s, e);
  s = read_data(f, path, L, bytes, &t, e);
  if (s == FL_OK && h->fortran && t.ndim > 1 && t.numel > 0) s = reorder_fortran(path, &t, e);
  if (s != FL_OK) {
    fl_tensor_free(&t);
    return s;
  }
  *out = t;
  return FL_OK;
}

fl_status fl_npy_load(const char *path, const fl_npy_load_opts *o, fl_tensor *out, fl_err *e) {
  if (!path || !out) return fl_fail(e, FL_EINVAL, "fl_npy_load: path and out are required");
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return fl_fail(e, FL_EIO, "%s: cannot open: %s", path, strerror(errno));
  npy_header h;
  npy_layout layout = {0};
  fl_status s = read_header(f, path, &h, e);
  if (s == FL_OK) {
    char why[128];
    if (resolve_descr(h.descr, o, &layout, why, sizeof why) != 0)
      s = fl_fail(e, FL_EFORMAT, "%s: %s", path, why);
  }
  if (s == FL_OK) s = load_body(f, path, &h, &layout, out, e);
  fclose(f);
  return s;
}

/* ---- writing ---- */

static const char *save_descr(fl_dtype dt, int raw_bf16, fl_dtype *file_dt) {
  *file_dt = dt;
  switch (dt) {
    case FL_F32: return "<f4";
    case FL_F16: return "<f2";
    case FL_BF16:
      if (raw_bf16) return "<u2";
      *file_dt = FL_F32;
      return "<f4";
    case FL_I32: return "<i4";
    case FL_I64: return "<i8";
    case FL_BOOL: return "|b1";
    default: return NULL;
  }
}

static void format_shape(char *buf, size_t n, const fl_tensor *t) {
  size_t k = (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, t->ndim == 1 ? ",)" : ")");
}

/* Builds magic, version, length and the padded dict; returns its length. */
static size_t format_preamble(unsigned char *buf, size_t cap, const char *descr,
                              const fl_tensor *t) {
  char shape[FL_MAX_DIMS * 24 + 8], dict[sizeof shape + 96];
  format_shape(shape, sizeof shape, t);
  int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
  size_t dict_len = (size_t)len;
  /* Version 2.0 only for a header over 65535 bytes, which FL_MAX_DIMS sizes
   * cannot reach; kept so the rule stays in one place. */
  int major = dict_len + 1 + NPY_ALIGN > 65535 ? 2 : 1;
  size_t prefix = NPY_MAGIC_LEN + 2 + (major == 1 ? 2 : 4);
  size_t pad = (NPY_ALIGN - (prefix + dict_len + 1) % NPY_ALIGN) % NPY_ALIGN;
  size_t header_len = dict_len + pad + 1;
  if (prefix + header_len > cap) return 0;
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[NPY_MAGIC_LEN] = (unsigned char)major;
  buf[NPY_MAGIC_LEN + 1] = 0;
  store_le(buf + NPY_MAGIC_LEN + 2, (uint32_t)header_len, major == 1 ? 2 : 4);
  memcpy(buf + prefix, dict, dict_len);
  memset(buf + prefix + dict_len, ' ', pad);
  buf[prefix + header_len - 1] = '\n';
  return prefix + header_len;
}

/* Host copy of t's values as the file stores them: little-endian, bf16
 * widened to f32 unless raw. */
static fl_status file_data(const fl_tensor *t, fl_dtype file_dt, void **data, size_t *n,
                           fl_err *e) {
  size_t nbytes = fl_tensor_nbytes(t);
  void *host = malloc(nbytes ? nbytes : 1);
  if (!host) return fl_fail(e, FL_ENOMEM, "out of memory for %zu bytes", nbytes);
  fl_status s = nbytes ? fl_tensor_download(t, host, e) : FL_OK;
  if (s == FL_OK && file_dt != t->dtype) {
    size_t numel = (size_t)t->numel, width = fl_dtype_size(file_dt);
    void *wide = malloc(numel ? numel * width : 1);
    if (wide) fl_convert(wide, file_dt, host, t->dtype, numel);
    else s = fl_fail(e, FL_ENOMEM, "out of memory for %zu bytes", numel * width);
    free(host);
    host = wide;
    nbytes = numel * width;
  }
  if (s != FL_OK) {
    free(host);
    return s;
  }
  if (!host_is_little_endian()) swap_bytes(host, (size_t)t->numel, fl_dtype_size(file_dt));
  *data = host;
  *n = nbytes;
  return FL_OK;
}

static fl_status write_file(const char *path, const void *head, size_t head_len,
                            const void *data, size_t n, fl_err *e) {
  FILE *f = fopen(path, "wb");
  if (!f) return fl_fail(e, FL_EIO, "%s: cannot open for writing: %s", path, strerror(errno));
  int ok = fwrite(head, 1, head_len, f) == head_len && (n == 0 || fwrite(data, 1, n, f) == n);
  int err = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  if (ok) return FL_OK;
  return fl_fail(e, FL_EIO, "%s: write failed: %s", path, strerror(err));
}

fl_status fl_npy_save(const char *path, const fl_tensor *t, int raw_bf16, fl_err *e) {
  if (!path || !t) return fl_fail(e, FL_EINVAL, "fl_npy_save: path and tensor are required");
  fl_dtype file_dt;
  const char *descr = save_descr(t->dtype, raw_bf16, &file_dt);
  if (!descr || t->ndim < 0 || t->ndim > FL_MAX_DIMS)
    return fl_fail(e, FL_EINVAL, "%s: cannot save a tensor of dtype %d with %d dims", path,
                   (int)t->dtype, t->ndim);
  unsigned char head[1024];
  size_t head_len = format_preamble(head, sizeof head, descr, t);
  void *data = NULL;
  size_t n = 0;
  fl_status s = file_data(t, file_dt, &data, &n, e);
  if (s != FL_OK) return s;
  s = write_file(path, head, head_len, data, n, e);
  free(data);
  return s;
}
