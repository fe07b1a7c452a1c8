#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fl_npy.h"
#include "fl_test.h"

/* ---- helpers ---- */

/* Creates an empty file with a unique name under /tmp. */
static void temp_path(char *path, size_t n) {
  snprintf(path, n, "/tmp/fl_npy_test_XXXXXX");
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

/* Reads the whole file into a malloc'd buffer. */
static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *buf = malloc(1 << 16);
  *n = fread(buf, 1, 1 << 16, f);
  fclose(f);
  return buf;
}

/* Builds a .npy image: version major.0, dict padded so the data starts at a
 * multiple of align (1 means no padding beyond the '\n'). */
static unsigned char *npy_image(int major, const char *dict, size_t align, const void *data,
                                size_t n, size_t *len) {
  size_t prefix = major == 1 ? 10 : 12, dlen = strlen(dict);
  size_t pad = (align - (prefix + dlen + 1) % align) % align;
  size_t hlen = dlen + pad + 1;
  *len = prefix + hlen + n;
  unsigned char *buf = malloc(*len);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = 0;
  for (size_t i = 0; i < prefix - 8; i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + prefix, dict, dlen);
  memset(buf + prefix + dlen, ' ', pad);
  buf[prefix + hlen - 1] = '\n';
  if (n) memcpy(buf + prefix + hlen, data, n);
  return buf;
}

static void write_npy_aligned(const char *path, int major, const char *dict, size_t align,
                              const void *data, size_t n) {
  size_t len;
  unsigned char *buf = npy_image(major, dict, align, data, n, &len);
  write_bytes(path, buf, len);
  free(buf);
}

static void write_npy(const char *path, const char *dict, const void *data, size_t n) {
  write_npy_aligned(path, 1, dict, 64, data, n);
}

static int is_empty_tensor(const fl_tensor *t) {
  return t->host == NULL && t->numel == 0 && t->ndim == 0;
}

/* Loads path and checks that it fails with status want and a message that
 * names the path and contains text. */
static int load_fails_with(const char *path, fl_status want, const char *text) {
  fl_tensor t;
  fl_err e;
  fl_err_clear(&e);
  fl_status s = fl_npy_load(path, NULL, &t, &e);
  int ok = s == want && e.status == want && strstr(e.msg, text) && strstr(e.msg, path) &&
           is_empty_tensor(&t);
  if (!ok) fprintf(stderr, "  status %d, message \"%s\", wanted \"%s\"\n", (int)s, e.msg, text);
  if (s == FL_OK) fl_tensor_free(&t);
  return ok;
}

/* Writes a hand-made file and checks that loading it fails as described. */
static int npy_fails_with(int major, const char *dict, const void *data, size_t n,
                          const char *text) {
  char path[64];
  temp_path(path, sizeof path);
  write_npy_aligned(path, major, dict, 64, data, n);
  int ok = load_fails_with(path, FL_EFORMAT, text);
  remove(path);
  return ok;
}

static int load_hand_made(const char *dict, const void *data, size_t n, fl_dtype raw_as,
                          fl_tensor *t) {
  char path[64];
  temp_path(path, sizeof path);
  write_npy(path, dict, data, n);
  fl_npy_load_opts o = {raw_as};
  fl_err e;
  fl_status s = fl_npy_load(path, &o, t, &e);
  if (s != FL_OK) fprintf(stderr, "  load failed: %s\n", e.msg);
  remove(path);
  return s == FL_OK;
}

static fl_status make_tensor(fl_tensor *t, fl_dtype dt, int ndim, const int64_t *shape) {
  fl_device cpu = {FL_CPU, 0};
  fl_status s = fl_tensor_alloc(t, dt, cpu, ndim, shape, NULL);
  for (int64_t i = 0; s == FL_OK && i < t->numel; i++)
    fl_elem_set_f64(t->host, dt, (size_t)i, dt == FL_BOOL ? i % 2 : (double)i * 1.25 - 3.0);
  return s;
}

/* Saves t, loads it back with raw_as, and returns the loaded tensor. */
static int save_and_load(const fl_tensor *t, int raw_bf16, fl_dtype raw_as, fl_tensor *back,
                         char *header, size_t header_n) {
  char path[64];
  temp_path(path, sizeof path);
  fl_err e;
  fl_npy_load_opts o = {raw_as};
  int ok = fl_npy_save(path, t, raw_bf16, &e) == FL_OK && fl_npy_load(path, &o, back, &e) == FL_OK;
  if (!ok) fprintf(stderr, "  round trip failed: %s\n", e.msg);
  size_t n = 0;
  unsigned char *bytes = read_bytes(path, &n);
  if (header && bytes && n >= 10) {
    size_t hlen = (size_t)bytes[8] | (size_t)bytes[9] << 8;
    snprintf(header, header_n, "%.*s", (int)(hlen < n - 10 ? hlen : n - 10), bytes + 10);
  }
  free(bytes);
  remove(path);
  return ok;
}

static int same_tensor(const fl_tensor *a, const fl_tensor *b) {
  return a->dtype == b->dtype && a->ndim == b->ndim && a->numel == b->numel &&
         memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0 &&
         memcmp(a->host, b->host, fl_tensor_nbytes(a)) == 0;
}

static void put_be(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

/* ---- round trips ---- */

FL_TEST(npy_round_trips_every_dtype) {
  const fl_dtype dts[] = {FL_F32, FL_F16, FL_I32, FL_I64, FL_BOOL};
  const char *descrs[] = {"'<f4'", "'<f2'", "'<i4'", "'<i8'", "'|b1'"};
  int64_t shape[] = {2, 3};
  for (int i = 0; i < 5; i++) {
    fl_tensor t, back;
    char header[256] = "";
    CHECK(make_tensor(&t, dts[i], 2, shape) == FL_OK);
    CHECK(save_and_load(&t, 0, FL_DTYPE_COUNT, &back, header, sizeof header));
    CHECK(same_tensor(&t, &back));
    CHECK(strstr(header, descrs[i]) != NULL);
    fl_tensor_free(&t);
    fl_tensor_free(&back);
  }
}

FL_TEST(npy_saves_a_64_aligned_version_1_header) {
  int64_t shape[] = {2, 3};
  fl_tensor t;
  CHECK(make_tensor(&t, FL_F32, 2, shape) == FL_OK);
  char path[64];
  temp_path(path, sizeof path);
  CHECK(fl_npy_save(path, &t, 0, NULL) == FL_OK);
  size_t n = 0;
  unsigned char *b = read_bytes(path, &n);
  CHECK(b && n == 128 + 24);
  if (b && n == 128 + 24) {
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    CHECK(b[8] == 118 && b[9] == 0);
    CHECK(memcmp(b + 10, dict, strlen(dict)) == 0);
    CHECK(b[10 + strlen(dict)] == ' ' && b[126] == ' ' && b[127] == '\n');
    CHECK(memcmp(b + 128, t.host, 24) == 0);
  }
  free(b);
  remove(path);
  fl_tensor_free(&t);
}

FL_TEST(npy_bf16_round_trips_as_exact_f32) {
  int64_t shape[] = {4};
  fl_tensor t, back;
  CHECK(make_tensor(&t, FL_BF16, 1, shape) == FL_OK);
  ((uint16_t *)t.host)[3] = 0x7f80; /* +inf */
  char header[256] = "";
  CHECK(save_and_load(&t, 0, FL_DTYPE_COUNT, &back, header, sizeof header));
  CHECK(back.dtype == FL_F32 && back.numel == 4 && back.ndim == 1 && back.shape[0] == 4);
  CHECK(strstr(header, "'<f4'") && strstr(header, "(4,)"));
  for (int i = 0; i < 4 && back.dtype == FL_F32; i++)
    CHECK(((float *)back.host)[i] == fl_bf16_to_f32(((uint16_t *)t.host)[i]));
  fl_tensor_free(&t);
  fl_tensor_free(&back);
}

FL_TEST(npy_bf16_round_trips_as_raw_bits) {
  int64_t shape[] = {3, 2};
  fl_tensor t, back, as_int;
  CHECK(make_tensor(&t, FL_BF16, 2, shape) == FL_OK);
  ((uint16_t *)t.host)[5] = 0xffc1; /* a NaN with a payload */
  char header[256] = "";
  CHECK(save_and_load(&t, 1, FL_BF16, &back, header, sizeof header));
  CHECK(strstr(header, "'<u2'") != NULL);
  CHECK(same_tensor(&t, &back));
  CHECK(save_and_load(&t, 1, FL_DTYPE_COUNT, &as_int, NULL, 0));
  CHECK(as_int.dtype == FL_I32 && as_int.numel == 6);
  for (int i = 0; i < 6 && as_int.dtype == FL_I32; i++)
    CHECK(((int32_t *)as_int.host)[i] == ((uint16_t *)t.host)[i]);
  fl_tensor_free(&t);
  fl_tensor_free(&back);
  fl_tensor_free(&as_int);
}

FL_TEST(npy_round_trips_0d_and_zero_size) {
  fl_tensor t, back;
  char header[256] = "";
  CHECK(make_tensor(&t, FL_F32, 0, NULL) == FL_OK);
  ((float *)t.host)[0] = 7.5f;
  CHECK(save_and_load(&t, 0, FL_DTYPE_COUNT, &back, header, sizeof header));
  CHECK(strstr(header, "'shape': ()") != NULL);
  CHECK(back.ndim == 0 && back.numel == 1 && ((float *)back.host)[0] == 7.5f);
  fl_tensor_free(&t);
  fl_tensor_free(&back);

  int64_t shape[] = {0, 3};
  CHECK(make_tensor(&t, FL_I64, 2, shape) == FL_OK);
  CHECK(save_and_load(&t, 0, FL_DTYPE_COUNT, &back, header, sizeof header));
  CHECK(strstr(header, "'shape': (0, 3)") != NULL);
  CHECK(back.dtype == FL_I64 && back.ndim == 2 && back.numel == 0);
  CHECK(back.shape[0] == 0 && back.shape[1] == 3);
  fl_tensor_free(&t);
  fl_tensor_free(&back);
}

FL_TEST(npy_round_trips_eight_dims) {
  int64_t shape[FL_MAX_DIMS] = {1, 2, 1, 3, 1, 2, 1, 2};
  fl_tensor t, back;
  CHECK(make_tensor(&t, FL_I32, FL_MAX_DIMS, shape) == FL_OK);
  CHECK(save_and_load(&t, 0, FL_DTYPE_COUNT, &back, NULL, 0));
  CHECK(same_tensor(&t, &back));
  fl_tensor_free(&t);
  fl_tensor_free(&back);
}

/* ---- hand-written files ---- */

FL_TEST(npy_loads_f8_as_f32_rounded_to_nearest_even) {
  const double in[] = {1.0, 0.1, 1.0 + 0x1p-24, 1.0 + 3 * 0x1p-24, 1e300, -0.0};
  const float want[] = {1.0f, 0.1f, 1.0f, 1.0f + 0x1p-22f, INFINITY, -0.0f};
  fl_tensor t;
  CHECK(load_hand_made("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", in,
                       sizeof in, FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_F32 && t.numel == 6);
  for (int i = 0; i < 6 && t.dtype == FL_F32; i++)
    CHECK(memcmp(&((float *)t.host)[i], &want[i], 4) == 0);
  fl_tensor_free(&t);
}

FL_TEST(npy_loads_big_endian) {
  unsigned char f4[8], i8[16], f8[8], u2[2];
  float a = 1.5f, b = -2.0f;
  uint32_t bits;
  memcpy(&bits, &a, 4);
  put_be(f4, bits, 4);
  memcpy(&bits, &b, 4);
  put_be(f4 + 4, bits, 4);
  put_be(i8, (uint64_t)-5, 8);
  put_be(i8 + 8, 1ull << 40, 8);
  double c = -0.25;
  uint64_t bits64;
  memcpy(&bits64, &c, 8);
  put_be(f8, bits64, 8);
  put_be(u2, 0xfffe, 2);
  fl_tensor t;
  CHECK(load_hand_made("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4, 8,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_F32 && ((float *)t.host)[0] == 1.5f && ((float *)t.host)[1] == -2.0f);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", i8, 16,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I64 && ((int64_t *)t.host)[0] == -5 && ((int64_t *)t.host)[1] == 1ll << 40);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '>f8', 'fortran_order': False, 'shape': (), }", f8, 8,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_F32 && t.ndim == 0 && ((float *)t.host)[0] == -0.25f);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '>u2', 'fortran_order': False, 'shape': (1,), }", u2, 2,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && ((int32_t *)t.host)[0] == 0xfffe);
  fl_tensor_free(&t);
}

FL_TEST(npy_loads_fortran_order_as_c_order) {
  const int32_t f2x3[] = {0, 3, 1, 4, 2, 5};
  fl_tensor t;
  CHECK(load_hand_made("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", f2x3,
                       sizeof f2x3, FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3);
  for (int i = 0; i < 6 && t.numel == 6; i++) CHECK(((int32_t *)t.host)[i] == i);
  fl_tensor_free(&t);

  /* 2x3x4, element (i, j, k) = 12i + 4j + k, stored first index fastest. */
  float f[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++) f[i + 2 * j + 6 * k] = (float)(12 * i + 4 * j + k);
  CHECK(load_hand_made("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }", f,
                       sizeof f, FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_F32 && t.numel == 24);
  for (int i = 0; i < 24 && t.numel == 24; i++) CHECK(((float *)t.host)[i] == (float)i);
  fl_tensor_free(&t);
}

FL_TEST(npy_loads_u2_as_raw_bf16) {
  const uint16_t bits[] = {0x3f80, 0xc000, 0x0001};
  fl_tensor t;
  CHECK(load_hand_made("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", bits,
                       sizeof bits, FL_BF16, &t));
  CHECK(t.dtype == FL_BF16 && t.numel == 3);
  if (t.dtype == FL_BF16) {
    CHECK(memcmp(t.host, bits, sizeof bits) == 0);
    CHECK(fl_bf16_to_f32(((uint16_t *)t.host)[0]) == 1.0f);
    CHECK(fl_bf16_to_f32(((uint16_t *)t.host)[1]) == -2.0f);
  }
  fl_tensor_free(&t);
}

FL_TEST(npy_loads_small_integers_and_bools) {
  const int8_t i1[] = {-1, 127, -128};
  const uint8_t u1[] = {255, 0};
  const int16_t i2[] = {-300};
  const uint16_t u2[] = {65535};
  const uint32_t u4[] = {4294967295u};
  const uint8_t b1[] = {0, 2, 1, 255};
  fl_tensor t;
  CHECK(load_hand_made("{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }", i1, 3,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && ((int32_t *)t.host)[0] == -1 && ((int32_t *)t.host)[2] == -128);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '=u1', 'fortran_order': False, 'shape': (2,), }", u1, 2,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && ((int32_t *)t.host)[0] == 255);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }", i2, 2,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && ((int32_t *)t.host)[0] == -300);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", u2, 2,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I32 && ((int32_t *)t.host)[0] == 65535);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }", u4, 4,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_I64 && ((int64_t *)t.host)[0] == 4294967295ll);
  fl_tensor_free(&t);
  CHECK(load_hand_made("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }", b1, 4,
                       FL_DTYPE_COUNT, &t));
  CHECK(t.dtype == FL_BOOL && memcmp(t.host, "\0\1\1\1", 4) == 0);
  fl_tensor_free(&t);
}

FL_TEST(npy_accepts_header_variants) {
  const char *dicts[] = {
      "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<i4\"}",
      "{ 'descr' :'<i4','fortran_order':False ,'shape':( 2 ,3 , ) }",
      "{'descr': '<i4',\n 'fortran_order': False,\n 'shape': (2L, 3L),\n}",
      ("{'note': 'x', 'descr': '<i4', 'extra': [(1, 'a'), {'b': ')'}], "
       "'fortran_order': False, 'flag': None, 'shape': (2, 3), 'n': -1.5e3}"),
  };
  const int32_t data[] = {0, 1, 2, 3, 4, 5};
  for (int i = 0; i < 4; i++) {
    fl_tensor t;
    CHECK(load_hand_made(dicts[i], data, sizeof data, FL_DTYPE_COUNT, &t));
    CHECK(t.dtype == FL_I32 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3);
    CHECK(t.numel == 6 && memcmp(t.host, data, sizeof data) == 0);
    fl_tensor_free(&t);
  }
}

FL_TEST(npy_accepts_versions_2_and_3_and_any_alignment) {
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const float data[] = {0.5f, -1.0f};
  const int majors[] = {2, 3, 1, 1, 2};
  const size_t aligns[] = {64, 64, 16, 1, 1};
  for (int i = 0; i < 5; i++) {
    char path[64];
    temp_path(path, sizeof path);
    write_npy_aligned(path, majors[i], dict, aligns[i], data, sizeof data);
    fl_tensor t;
    fl_err e;
    CHECK(fl_npy_load(path, NULL, &t, &e) == FL_OK);
    CHECK(t.dtype == FL_F32 && t.numel == 2 && memcmp(t.host, data, sizeof data) == 0);
    fl_tensor_free(&t);
    remove(path);
  }
}

/* ---- errors ---- */

FL_TEST(npy_reports_a_missing_file) {
  char path[64];
  temp_path(path, sizeof path);
  remove(path);
  CHECK(load_fails_with(path, FL_EIO, "cannot open"));
  CHECK(load_fails_with("/tmp", FL_EIO, "read failed"));
  fl_tensor t;
  CHECK(fl_npy_load(path, NULL, &t, NULL) == FL_EIO);
}

FL_TEST(npy_reports_bad_magic_and_version) {
  char path[64];
  temp_path(path, sizeof path);
  CHECK(load_fails_with(path, FL_EFORMAT, "bad magic"));
  write_bytes(path, "PK\3\4 not numpy at all", 22);
  CHECK(load_fails_with(path, FL_EFORMAT, "bad magic"));
  write_bytes(path, "\x93NUMP", 5);
  CHECK(load_fails_with(path, FL_EFORMAT, "bad magic"));
  write_bytes(path, "\x93NUMPY\x04\x00\x10\x00", 10);
  CHECK(load_fails_with(path, FL_EFORMAT, "unsupported .npy version 4.0"));
  write_bytes(path, "\x93NUMPY\x01\x01\x10\x00", 10);
  CHECK(load_fails_with(path, FL_EFORMAT, "unsupported .npy version 1.1"));
  remove(path);
}

FL_TEST(npy_reports_a_truncated_header) {
  char path[64];
  temp_path(path, sizeof path);
  write_bytes(path, "\x93NUMPY\x01", 7);
  CHECK(load_fails_with(path, FL_EFORMAT, "truncated header"));
  write_bytes(path, "\x93NUMPY\x02\x00\x10\x00", 10);
  CHECK(load_fails_with(path, FL_EFORMAT, "truncated header"));
  write_bytes(path, "\x93NUMPY\x01\x00\x46\x00{'descr': '<f4'", 25);
  CHECK(load_fails_with(path, FL_EFORMAT, "truncated header: expected 70 bytes, found 15"));
  remove(path);
}

FL_TEST(npy_reports_a_malformed_header) {
  const char *cases[][2] = {
      {"['descr', '<f4']", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ", "malformed header"},
      {"{'descr: '<f4', 'fortran_order': False, 'shape': (2,)}", "malformed header"},
      {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", "expected ':' after 'descr'"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "must be a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", "expected ',' or ')'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", "expected an integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", "unexpected text"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': [1, 2}", "mismatched"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': [(1, 2)", "unclosed"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': }", "expected a value"},
      {"{'descr': 4, 'fortran_order': False, 'shape': (2,)}", "expected a quoted string"},
  };
  const float data[2] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(npy_fails_with(1, cases[i][0], data, sizeof data, cases[i][1]));
}

FL_TEST(npy_reports_a_missing_key) {
  const float data[2] = {0};
  CHECK(npy_fails_with(1, "{'fortran_order': False, 'shape': (2,), }", data, 8,
                       "missing the 'descr' key"));
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'shape': (2,), }", data, 8,
                       "missing the 'fortran_order' key"));
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, }", data, 8,
                       "missing the 'shape' key"));
  CHECK(npy_fails_with(1, "{}", data, 8, "missing the 'descr' key"));
}

FL_TEST(npy_reports_an_unsupported_descr) {
  const char *cases[][2] = {
      {"'<c8'", "'<c8' (complex64) is not supported"},
      {"'<u8'", "'<u8' (uint64) is not supported"},
      {"'<f16'", "'<f16' (float128) is not supported"},
      {"'<U4'", "'<U4' (unicode string) is not supported"},
      {"'|O'", "'|O' (Python object) is not supported"},
      {"'<M8[ns]'", "'<M8[ns]' (datetime64) is not supported"},
      {"'|f4'", "'|f4' (float32) is not supported"},
      {"'<f4x'", "'<f4x' (float32) is not supported"},
      {"''", "'' (unknown type) is not supported"},
      {"[('a', '<f4')]", "structured arrays"},
  };
  char dict[160];
  const unsigned char data[64] = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(dict, sizeof dict, "{'descr': %s, 'fortran_order': False, 'shape': (2,), }",
             cases[i][0]);
    CHECK(npy_fails_with(1, dict, data, sizeof data, cases[i][1]));
  }
}

FL_TEST(npy_reports_bad_shapes) {
  const unsigned char data[64] = {0};
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, "
                          "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }",
                       data, 4, "too many dims: 9 (at most 8)"));
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", data,
                       sizeof data, "negative size -3 in shape"));
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, "
                          "'shape': (4294967296, 4294967296), }",
                       data, sizeof data, "shape product overflow"));
  CHECK(npy_fails_with(1, "{'descr': '<f8', 'fortran_order': False, "
                          "'shape': (2305843009213693952,), }",
                       data, sizeof data, "shape product overflow"));
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, "
                          "'shape': (99999999999999999999,), }",
                       data, sizeof data, "shape product overflow"));
}

FL_TEST(npy_reports_truncated_data) {
  const float data[6] = {0};
  CHECK(npy_fails_with(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data, 8,
                       "truncated data: expected 24 bytes, found 8"));
  CHECK(npy_fails_with(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", data, 0,
                       "truncated data: expected 48 bytes, found 0"));
  CHECK(npy_fails_with(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (), }", data, 0,
                       "truncated data: expected 1 bytes, found 0"));
}

/* Every prefix of a valid file, and the valid file with each header byte
 * changed, must load or fail cleanly (valgrind checks the "cleanly"). */
FL_TEST(npy_survives_truncated_and_corrupted_files) {
  const char *dict = "{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3), }";
  const double data[6] = {1, 2, 3, 4, 5, 6};
  size_t len;
  unsigned char *good = npy_image(1, dict, 64, data, sizeof data, &len);
  char path[64];
  temp_path(path, sizeof path);
  for (size_t n = 0; n < len; n++) {
    write_bytes(path, good, n);
    fl_tensor t;
    fl_err e;
    CHECK(fl_npy_load(path, NULL, &t, &e) == FL_EFORMAT && is_empty_tensor(&t));
  }
  const char subs[] = {'\0', ' ', '\'', '"', '(', ')', ',', ':', '{', '}', '[', '-', '9', 'x',
                       '\\', (char)0xff};
  for (size_t pos = 0; pos < 64; pos++) {
    for (size_t k = 0; k < sizeof subs; k++) {
      unsigned char bad[64 + sizeof data];
      memcpy(bad, good, len);
      bad[pos] = (unsigned char)subs[k];
      write_bytes(path, bad, len);
      fl_tensor t;
      fl_err e;
      fl_status s = fl_npy_load(path, NULL, &t, &e);
      CHECK(s == FL_OK || s == FL_EFORMAT || s == FL_ENOMEM);
      if (s == FL_OK) fl_tensor_free(&t);
      else CHECK(is_empty_tensor(&t) && strstr(e.msg, path));
    }
  }
  free(good);
  remove(path);
}

FL_TEST(npy_save_reports_write_errors) {
  int64_t shape[] = {2};
  fl_tensor t;
  CHECK(make_tensor(&t, FL_F32, 1, shape) == FL_OK);
  fl_err e;
  const char *path = "/nonexistent_fl_npy_dir/x.npy";
  CHECK(fl_npy_save(path, &t, 0, &e) == FL_EIO);
  CHECK(strstr(e.msg, "cannot open for writing") && strstr(e.msg, path));
  FILE *full = fopen("/dev/full", "wb");
  if (full) {
    fclose(full);
    CHECK(fl_npy_save("/dev/full", &t, 0, &e) == FL_EIO);
    CHECK(strstr(e.msg, "write failed") != NULL);
  }
  fl_tensor_free(&t);
}
