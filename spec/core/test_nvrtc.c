#include <stdlib.h>
#include <string.h>

#include "fl_cuda.h"
#include "fl_nvrtc.h"
#include "fl_test.h"

/* What NVRTC 13.0 printed with -Xptxas=-v -maxrregcount=32 for two kernels
 * and a noinline device function (which is no kernel). */
static const char spill_log[] =
    "ptxas info    : Overriding maximum register limit 256 for 'spill' with  32 of "
    "maxrregcount option\n"
    "ptxas info    : 0 bytes gmem\n"
    "ptxas info    : Compiling entry function 'dyn' for 'sm_90'\n"
    "ptxas info    : Function properties for dyn\n"
    "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
    "ptxas info    : Used 10 registers, used 1 barriers, 1024 bytes smem\n"
    "ptxas info    : Compile time = 2.217 ms\n"
    "ptxas info    : Compiling entry function '_Z2tkILi3EEvPf' for 'sm_90'\n"
    "ptxas info    : Function properties for _Z2tkILi3EEvPf\n"
    "ptxas         .     624 bytes stack frame, 880 bytes spill stores, 1052 bytes spill loads\n"
    "ptxas info    : Used 32 registers, used 0 barriers, 624 bytes cumulative stack size, "
    "360 bytes cmem[0]\n"
    "ptxas info    : Compile time = 24.198 ms\n"
    "ptxas info    : Function properties for _Z6helperPfi\n"
    "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n";

FL_TEST(nvrtc_report_reads_each_entry_function) {
  fl_kernel_report *k = NULL;
  int n = 0;
  fl_err e;
  CHECK(fl_nvrtc_parse_report(spill_log, &k, &n, &e) == FL_OK);
  CHECK(n == 2);
  if (n != 2) return;
  CHECK(strcmp(k[0].name, "dyn") == 0);
  CHECK(k[0].registers == 10 && k[0].shared == 1024);
  CHECK(k[0].spill_stores == 0 && k[0].spill_loads == 0 && k[0].stack == 0);
  CHECK(strcmp(k[1].name, "_Z2tkILi3EEvPf") == 0);
  CHECK(k[1].registers == 32 && k[1].shared == 0 && k[1].stack == 624);
  CHECK(k[1].spill_stores == 880 && k[1].spill_loads == 1052);
  fl_kernel_reports_free(k, n);
}

FL_TEST(nvrtc_report_of_a_log_without_kernels_is_empty) {
  fl_kernel_report *k = (fl_kernel_report *)1;
  int n = -1;
  CHECK(fl_nvrtc_parse_report("", &k, &n, NULL) == FL_OK && n == 0 && k == NULL);
  CHECK(fl_nvrtc_parse_report(NULL, &k, &n, NULL) == FL_OK && n == 0 && k == NULL);
}

FL_TEST(nvrtc_log_excerpt_drops_info_and_cuts_at_a_line) {
  char buf[128];
  const char *log = "ptxas info    : 0 bytes gmem\n"
                    "x.cu(2): error: identifier \"y\" is undefined\n"
                    "   x[0] = y; }\n\n"
                    "1 error detected in the compilation of \"x.cu\".\n";
  fl_nvrtc_log_excerpt(log, buf, sizeof buf);
  CHECK(strcmp(buf, "x.cu(2): error: identifier \"y\" is undefined\n   x[0] = y; }\n"
                    "1 error detected in the compilation of \"x.cu\".") == 0);
  size_t n = fl_nvrtc_log_excerpt(log, buf, 64);
  CHECK(n < 64 && strlen(buf) == n);
  CHECK(strncmp(buf, "x.cu(2): error", 14) == 0);
  CHECK(strstr(buf, "[... log cut]") != NULL);
  char tiny[4];
  fl_nvrtc_log_excerpt(log, tiny, sizeof tiny);
  CHECK(strlen(tiny) < sizeof tiny);
}

FL_TEST(nvrtc_bad_arguments_are_errors) {
  if (!fl_nvrtc_available()) return; /* spec/jit_spec.lua says why */
  fl_module_image img;
  fl_err e;
  CHECK(fl_nvrtc_compile("", "x.cu", "gfx90a", NULL, 0, &img, &e) == FL_EINVAL);
  CHECK(strstr(e.msg, "gfx90a") != NULL);
  fl_module_image_free(&img);
  CHECK(fl_nvrtc_compile("", "x.cu", "sm_90", NULL, 1, &img, &e) == FL_EINVAL);
  fl_module_image_free(&img);
  CHECK(fl_nvrtc_compile(NULL, "x.cu", "sm_90", NULL, 0, &img, &e) == FL_EINVAL);
  fl_module_image_free(&img);
}

FL_TEST(cuda_kernels_without_a_gpu_are_one_clear_error) {
  if (fl_cuda_available()) return; /* this test is about machines without CUDA */
  fl_err e;
  fl_cuda_module m;
  CHECK(fl_cuda_module_load(0, "x", &m, &e) == FL_ENODEV && m.handle == NULL);
  CHECK(strstr(e.msg, "CUDA is not available") != NULL);
  fl_cuda_function f;
  CHECK(fl_cuda_function_get(&m, "add", &f, &e) == FL_ENODEV && f.handle == NULL);
  unsigned one[3] = {1, 1, 1};
  CHECK(fl_cuda_launch(&f, one, one, 0, NULL, NULL, &e) == FL_ENODEV);
  CHECK(fl_cuda_function_set_shared(&f, 65536, &e) == FL_ENODEV);
  CHECK(fl_cuda_synchronize(0, &e) == FL_ENODEV);
  fl_cuda_module_unload(&m);
}
