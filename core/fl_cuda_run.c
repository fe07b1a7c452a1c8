#include "fl_cuda_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 128

fl_status fl_cuda_exec_build(const fl_plan *p, fl_dtype out_dtype, int scalar_only, int ordinal,
                             const char *arch, fl_cuda_exec *x, fl_err *e) {
  memset(x, 0, sizeof *x);
  x->ordinal = ordinal;
  x->out_dtype = out_dtype;
  char dev_arch[24];
  if (!arch) {
    fl_cuda_info info;
    fl_status s = fl_cuda_device_info(ordinal, &info, e);
    if (s != FL_OK) return s;
    snprintf(dev_arch, sizeof dev_arch, "sm_%d%d", info.major, info.minor);
    arch = dev_arch;
  }
  fl_status s = fl_cuda_generate(p, out_dtype, scalar_only, &x->prog, e);
  if (s == FL_OK) s = fl_nvrtc_compile(x->prog.source, "flashlight.cu", arch, NULL, 0, &x->image, e);
  if (s == FL_OK) s = fl_cuda_module_load(ordinal, x->image.data, &x->module, e);
  if (s == FL_OK) {
    x->loaded = 1;
    x->fn = calloc((size_t)x->prog.nkernels + 1, sizeof *x->fn);
    if (!x->fn) s = fl_fail(e, FL_ENOMEM, "out of memory loading kernels");
  }
  for (int k = 0; s == FL_OK && k < x->prog.nkernels; k++)
    s = fl_cuda_function_get(&x->module, x->prog.k[k].name, &x->fn[k], e);
  if (s != FL_OK) fl_cuda_exec_free(x);
  return s;
}

void fl_cuda_exec_free(fl_cuda_exec *x) {
  if (x->loaded) fl_cuda_module_unload(&x->module);
  fl_module_image_free(&x->image);
  fl_cuda_program_free(&x->prog);
  free(x->fn);
  memset(x, 0, sizeof *x);
}

/* ---- one run ---- */

typedef struct buffers {
  uint64_t *ptr;  /* per value: its device memory */
  char *owned;    /* per value: allocated for this run (intermediates) */
  uint64_t err;   /* the kernels' error flag */
} buffers;

static fl_status check_inputs(const fl_cuda_exec *x, const fl_graph *g, const fl_tensor *in,
                              fl_err *e) {
  for (int i = 0; i < g->ninputs; i++) {
    const fl_value *v = &g->vals[i];
    if (in[i].device.kind != FL_CUDA || in[i].device.index != x->ordinal)
      return fl_fail(e, FL_EINVAL, "input '%s' is not on cuda:%d", v->name, x->ordinal);
    if (in[i].dtype != v->dtype)
      return fl_fail(e, FL_EINVAL, "input '%s' is %s, the program was traced for %s", v->name,
                     fl_dtype_name(in[i].dtype), fl_dtype_name(v->dtype));
    if (in[i].numel != fl_value_numel(g, i))
      return fl_fail(e, FL_EINVAL, "input '%s' has %lld elements, the program was traced for %lld",
                     v->name, (long long)in[i].numel, (long long)fl_value_numel(g, i));
  }
  return FL_OK;
}

static fl_status alloc_buffers(fl_cuda_exec *x, const fl_graph *g, const fl_tensor *in,
                               fl_tensor *outs, buffers *b, fl_err *e) {
  b->ptr = calloc((size_t)g->nvals + 1, sizeof *b->ptr);
  b->owned = calloc((size_t)g->nvals + 1, 1);
  if (!b->ptr || !b->owned) return fl_fail(e, FL_ENOMEM, "out of host memory");
  for (int i = 0; i < g->ninputs; i++) b->ptr[i] = in[i].dptr;
  fl_device dev = {FL_CUDA, x->ordinal};
  for (int o = 0; o < g->noutputs; o++) {
    const fl_value *v = &g->vals[g->outputs[o]];
    int64_t shape[FL_MAX_DIMS];
    for (int d = 0; d < v->ndim; d++) shape[d] = g->syms[v->dims[d]].size;
    fl_dtype dt = fl_cuda_storage(g, g->outputs[o], x->out_dtype);
    fl_status s = fl_tensor_alloc(&outs[o], dt, dev, v->ndim, shape, e);
    if (s != FL_OK) return s;
    b->ptr[g->outputs[o]] = outs[o].dptr;
  }
  for (int v = g->ninputs; v < g->nvals; v++) {
    if (b->ptr[v] || g->vals[v].tile_local) continue;
    size_t bytes = (size_t)fl_value_numel(g, v) * sizeof(double);
    fl_status s = fl_cuda_alloc(x->ordinal, bytes ? bytes : 8, &b->ptr[v], e);
    if (s != FL_OK) return s;
    b->owned[v] = 1;
  }
  fl_status s = fl_cuda_alloc(x->ordinal, sizeof(int), &b->err, e);
  if (s == FL_OK) s = fl_cuda_memset(x->ordinal, b->err, 0, 4, 1, e);
  return s;
}

static void free_buffers(const fl_cuda_exec *x, const fl_graph *g, buffers *b) {
  for (int v = 0; b->owned && v < g->nvals; v++)
    if (b->owned[v]) fl_cuda_free(x->ordinal, b->ptr[v]);
  if (b->err) fl_cuda_free(x->ordinal, b->err);
  free(b->ptr);
  free(b->owned);
}

static fl_status launch(fl_cuda_exec *x, int k, buffers *b, fl_err *e) {
  const fl_cuda_kernel *kd = &x->prog.k[k];
  uint64_t args[FL_CUDA_MAX_PARAMS + 1];
  void *params[FL_CUDA_MAX_PARAMS + 1];
  for (int a = 0; a < kd->nparams; a++) {
    args[a] = b->ptr[kd->param[a]];
    params[a] = &args[a];
  }
  args[kd->nparams] = b->err;
  params[kd->nparams] = &args[kd->nparams];
  int64_t blocks = (kd->threads + BLOCK - 1) / BLOCK;
  if (blocks == 0) return FL_OK;
  if (blocks > 0x7fffffff) return fl_fail(e, FL_EINVAL, "kernel %s: too many threads", kd->name);
  unsigned grid[3] = {(unsigned)blocks, 1, 1}, block[3] = {BLOCK, 1, 1};
  return fl_cuda_launch(&x->fn[k], grid, block, 0, NULL, params, e);
}

fl_status fl_cuda_exec_run(fl_cuda_exec *x, const fl_graph *g, const fl_tensor *inputs,
                           fl_tensor *outs, fl_err *e) {
  buffers b = {0};
  memset(outs, 0, (size_t)g->noutputs * sizeof *outs);
  fl_status s = check_inputs(x, g, inputs, e);
  if (s == FL_OK) s = fl_cuda_use(x->ordinal, e);
  if (s == FL_OK) s = alloc_buffers(x, g, inputs, outs, &b, e);
  for (int k = 0; s == FL_OK && k < x->prog.nkernels; k++) s = launch(x, k, &b, e);
  int flag = 0;
  if (s == FL_OK) s = fl_cuda_to_host(x->ordinal, &flag, b.err, sizeof flag, e);
  if (s == FL_OK && flag)
    s = fl_fail(e, FL_EINVAL, "a load's index fell outside its dimension (a gather or a "
                "data-dependent index out of range)");
  free_buffers(x, g, &b);
  if (s != FL_OK)
    for (int o = 0; o < g->noutputs; o++) fl_tensor_free(&outs[o]);
  return s;
}
