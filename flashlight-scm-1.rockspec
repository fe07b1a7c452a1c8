rockspec_format = "3.0"
package = "flashlight"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "An attention compiler: variants written as tensor math, compiled to fused CUDA kernels",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
-- The Makefile compiles the Lua front end (lua/flashlight/) into the module.
build = {
  type = "make",
  build_target = "module",
  build_variables = { CFLAGS = "$(CFLAGS)", LUA_INC = "$(LUA_INCDIR)" },
  install_target = "install-module",
  install_variables = { INST_LIBDIR = "$(LIBDIR)" },
}
