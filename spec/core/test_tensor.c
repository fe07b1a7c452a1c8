#include <string.h>

#include "fl_cuda.h"
#include "fl_tensor.h"
#include "fl_test.h"

static const fl_device cpu = {FL_CPU, 0};

FL_TEST(device_names_parse) {
  fl_device d;
  CHECK(fl_device_parse("cpu", &d) == 0 && d.kind == FL_CPU);
  CHECK(fl_device_parse("cuda", &d) == 0 && d.kind == FL_CUDA && d.index == 0);
  CHECK(fl_device_parse("cuda:3", &d) == 0 && d.kind == FL_CUDA && d.index == 3);
  CHECK(fl_device_parse("cuda:", &d) == -1);
  CHECK(fl_device_parse("cuda:x", &d) == -1);
  CHECK(fl_device_parse("cuda:123456", &d) == -1);
  CHECK(fl_device_parse("gpu", &d) == -1);
}

FL_TEST(shape_checks) {
  fl_err e;
  int64_t n;
  CHECK(fl_shape_check(2, (int64_t[]){3, 4}, &n, &e) == FL_OK && n == 12);
  CHECK(fl_shape_check(0, NULL, &n, &e) == FL_OK && n == 1);
  CHECK(fl_shape_check(2, (int64_t[]){3, 0}, &n, &e) == FL_OK && n == 0);
  CHECK(fl_shape_check(2, (int64_t[]){3, -1}, &n, &e) == FL_EINVAL && strstr(e.msg, "negative"));
  CHECK(fl_shape_check(9, (int64_t[9]){1}, &n, &e) == FL_EINVAL && strstr(e.msg, "at most 8"));
  CHECK(fl_shape_check(3, (int64_t[]){1 << 30, 1 << 30, 1 << 30}, &n, &e) == FL_EINVAL);
}

FL_TEST(fill_arange_get_convert) {
  fl_err e;
  fl_tensor t, u;
  CHECK(fl_tensor_alloc(&t, FL_I64, cpu, 2, (int64_t[]){2, 3}, &e) == FL_OK);
  CHECK(fl_tensor_arange(&t, &e) == FL_OK);
  int64_t v;
  CHECK(fl_tensor_get_i64(&t, 5, &v, &e) == FL_OK && v == 5);
  CHECK(fl_tensor_get_i64(&t, 6, &v, &e) == FL_EINVAL && strstr(e.msg, "out of range"));
  CHECK(fl_tensor_alloc(&u, FL_BF16, cpu, 2, t.shape, &e) == FL_OK);
  CHECK(fl_tensor_convert(&u, &t, &e) == FL_OK);
  double d;
  CHECK(fl_tensor_get_f64(&u, 4, &d, &e) == FL_OK && d == 4.0);
  CHECK(u.ndim == 2 && u.shape[1] == 3 && fl_tensor_nbytes(&u) == 12);
  fl_tensor_free(&u);
  CHECK(fl_tensor_fill(&t, 7.0, &e) == FL_OK);
  CHECK(fl_tensor_get_i64(&t, 3, &v, &e) == FL_OK && v == 7);
  CHECK(fl_tensor_randn(&t, 1, &e) == FL_EINVAL && strstr(e.msg, "floating"));
  fl_tensor_free(&t);
  fl_tensor_free(&t); /* twice is harmless */
}

FL_TEST(random_tensors_depend_only_on_seed_and_position) {
  fl_err e;
  fl_tensor a, b;
  CHECK(fl_tensor_alloc(&a, FL_F32, cpu, 1, (int64_t[]){100}, &e) == FL_OK);
  CHECK(fl_tensor_alloc(&b, FL_F32, cpu, 2, (int64_t[]){10, 10}, &e) == FL_OK);
  CHECK(fl_tensor_randn(&a, 42, &e) == FL_OK && fl_tensor_randn(&b, 42, &e) == FL_OK);
  CHECK(memcmp(a.host, b.host, 400) == 0);
  CHECK(fl_tensor_rand(&a, 42, &e) == FL_OK);
  for (int i = 0; i < 100; i++) CHECK(((float *)a.host)[i] >= 0 && ((float *)a.host)[i] < 1);
  fl_tensor_free(&a);
  fl_tensor_free(&b);
}

FL_TEST(cuda_absent_is_one_clear_error) {
  if (fl_cuda_available()) return; /* this test is about machines without CUDA */
  fl_err e;
  fl_tensor t;
  CHECK(fl_tensor_alloc(&t, FL_F32, (fl_device){FL_CUDA, 0}, 1, (int64_t[]){4}, &e) == FL_ENODEV);
  CHECK(strstr(e.msg, "CUDA is not available") != NULL);
  fl_tensor_free(&t);
  int n = -1;
  CHECK(fl_cuda_device_count(&n, &e) == FL_ENODEV && n == 0);
}
