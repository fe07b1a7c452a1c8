rockspec_format = "3.0"
package = "flashlight"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "An attention compiler: variants written as tensor math, compiled to fused CUDA kernels",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "builtin",
  modules = {
    flashlight = {
      sources = {
        "core/fl_cuda.c", "core/fl_dtype.c", "core/fl_error.c", "core/fl_npy.c",
        "core/fl_rng.c", "core/fl_tensor.c",
        "lua/l_create.c", "lua/l_flashlight.c", "lua/l_opts.c", "lua/l_tensor.c",
      },
      incdirs = { "core", "lua" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "dl", "m" },
    },
  },
}
