#include "fl_cuda_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 128
#ifndef FL_NVRTC_LINEINFO
#define FL_NVRTC_LINEINFO 0 /* 1: kernels carry line info (ncu's source view; the disk cache keys on it) */
#endif

static fl_status build_schedules(const fl_plan *p, fl_cuda_exec *x, fl_err *e) {
  x->plan = p;
  x->sched = calloc((size_t)p->n + 1, sizeof *x->sched);
  x->fix = calloc((size_t)p->n + 1, sizeof *x->fix);
  x->fix_dirty = calloc((size_t)p->n + 1, sizeof *x->fix_dirty);
  x->keep = calloc((size_t)p->g->nvals + 1, sizeof *x->keep);
  if (!x->sched || !x->fix || !x->fix_dirty || !x->keep) return fl_fail(e, FL_ENOMEM, "out of memory loading kernels");
  fl_status s = FL_OK;
  for (int k = 0; s == FL_OK && k < x->prog.nkernels; k++) {
    const fl_cuda_kernel *kd = &x->prog.k[k];
    if (kd->schedule)
      s = fl_cuda_sched_build(&p->k[kd->plan_kernel], &kd->order, x->sms, x->ordinal, &x->sched[kd->plan_kernel], e);
  }
  return s;
}

/* wgmma and setmaxnreg are sm_90a's: the H100 and H200, not later chips. */
static int is_hopper(const fl_cuda_info *info) { return info->major == 9 && info->minor == 0; }

/* Device `ordinal`'s info: 0 where there is no such device. */
static int info_if_any(int ordinal, fl_cuda_info *info) {
  fl_err e;
  return fl_cuda_available() && fl_cuda_device_info(ordinal, info, &e) == FL_OK;
}

fl_cuda_path fl_cuda_auto_path(int ordinal) {
  fl_cuda_info info;
  return info_if_any(ordinal, &info) && is_hopper(&info) ? FL_PATH_HOPPER : FL_PATH_MMA;
}

int fl_cuda_auto_sms(int ordinal) {
  fl_cuda_info info;
  return info_if_any(ordinal, &info) && info.multiprocessors > 0 ? info.multiprocessors : 0;
}

/* The path and arch asked for, settled against device `ordinal` (info). */
static fl_status settle_path(int ordinal, const fl_cuda_info *info, fl_cuda_path *path, const char **arch,
                             char *buf, size_t n, fl_err *e) {
  int hopper = is_hopper(info);
  if (*path == FL_PATH_AUTO) *path = hopper ? FL_PATH_HOPPER : FL_PATH_MMA;
  if (*path == FL_PATH_HOPPER && !hopper)
    return fl_fail(e, FL_EINVAL, "the hopper path (wgmma) needs an sm_90 device; cuda:%d is sm_%d%d", ordinal,
                   info->major, info->minor);
  if (!*arch) {
    snprintf(buf, n, "sm_%d%d%s", info->major, info->minor, *path == FL_PATH_HOPPER ? "a" : "");
    *arch = buf;
  }
  return FL_OK;
}

fl_status fl_cuda_exec_build(const fl_plan *p, fl_dtype out_dtype, fl_cuda_path path, unsigned flags, int ordinal,
                             const char *arch, fl_cuda_exec *x, fl_err *e) {
  memset(x, 0, sizeof *x);
  x->ordinal = ordinal;
  x->out_dtype = out_dtype;
  char dev_arch[24];
  fl_cuda_info info;
  fl_status s = fl_cuda_device_info(ordinal, &info, e);
  if (s == FL_OK) s = settle_path(ordinal, &info, &path, &arch, dev_arch, sizeof dev_arch, e);
  if (s != FL_OK) return s;
  x->sms = info.multiprocessors > 0 ? info.multiprocessors : 1;
  x->path = path;
  s = fl_cuda_generate(p, out_dtype, path, flags, x->sms, &x->prog, e);
  static const char *lineinfo[] = {"-lineinfo"}; /* for profilers' source views */
  if (s == FL_OK)
    s = fl_nvrtc_compile(x->prog.source, "flashlight.cu", arch, FL_NVRTC_LINEINFO ? lineinfo : NULL,
                         FL_NVRTC_LINEINFO ? 1 : 0, &x->image, e);
  if (s == FL_OK) s = fl_cuda_module_load(ordinal, x->image.data, &x->module, e);
  if (s == FL_OK) {
    x->loaded = 1;
    x->fn = calloc((size_t)x->prog.nkernels + 1, sizeof *x->fn);
    if (!x->fn) s = fl_fail(e, FL_ENOMEM, "out of memory loading kernels");
  }
  for (int k = 0; s == FL_OK && k < x->prog.nkernels; k++) {
    s = fl_cuda_function_get(&x->module, x->prog.k[k].name, &x->fn[k], e);
    if (s == FL_OK && x->prog.k[k].smem > 48 * 1024)
      s = fl_cuda_function_set_shared(&x->fn[k], x->prog.k[k].smem, e);
  }
  if (s == FL_OK) s = build_schedules(p, x, e);
  if (s != FL_OK) fl_cuda_exec_free(x);
  return s;
}

void fl_cuda_exec_free(fl_cuda_exec *x) {
  for (int k = 0; x->sched && k < x->plan->n; k++) fl_cuda_sched_free(&x->sched[k], x->ordinal);
  for (int k = 0; x->fix && k < x->plan->n; k++)
    if (x->fix[k]) fl_cuda_free(x->ordinal, x->fix[k]);
  for (int v = 0; x->keep && v < x->plan->g->nvals; v++)
    if (x->keep[v]) fl_cuda_free(x->ordinal, x->keep[v]);
  if (x->err) fl_cuda_free(x->ordinal, x->err);
  fl_cuda_timer_free(&x->timer);
  free(x->sched);
  free(x->fix);
  free(x->fix_dirty);
  free(x->keep);
  if (x->loaded) fl_cuda_module_unload(&x->module);
  fl_module_image_free(&x->image);
  fl_cuda_program_free(&x->prog);
  free(x->fn);
  memset(x, 0, sizeof *x);
}

/* ---- one run ---- */

typedef struct buffers {
  uint64_t *ptr;  /* per value: its device memory */
  uint64_t out[FL_MAX_DIMS]; /* per output: where it goes */
  uint64_t err;   /* the kernels' error flag */
  uint64_t fix;   /* the rows a tensor-core kernel flagged, for the scalar kernel after it */
  int64_t nfix;   /* how many positions it has (the word after them: any flagged) */
  int fix_kernel; /* the plan kernel that flagged them */
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

static void output_shape(const fl_graph *g, int o, int64_t *shape) {
  const fl_value *v = &g->vals[g->outputs[o]];
  for (int d = 0; d < v->ndim; d++) shape[d] = g->syms[v->dims[d]].size;
}

/* Given output o: on x's device, of the output's storage dtype and shape. */
static fl_status check_given_one(const fl_cuda_exec *x, const fl_graph *g, int o,
                                 const fl_tensor *t, fl_err *e) {
  const fl_value *v = &g->vals[g->outputs[o]];
  fl_dtype want = fl_cuda_storage(g, g->outputs[o], x->out_dtype);
  if (t->device.kind != FL_CUDA || t->device.index != x->ordinal) {
    char dev[32];
    fl_device_format(t->device, dev, sizeof dev);
    return fl_fail(e, FL_EINVAL, "output %d ('%s') is on %s, expected cuda:%d", o + 1, v->name,
                   dev, x->ordinal);
  }
  if (t->dtype != want)
    return fl_fail(e, FL_EINVAL, "output %d ('%s') is %s, expected %s", o + 1, v->name,
                   fl_dtype_name(t->dtype), fl_dtype_name(want));
  int64_t shape[FL_MAX_DIMS];
  output_shape(g, o, shape);
  int same = t->ndim == v->ndim && t->numel == fl_value_numel(g, g->outputs[o]);
  for (int d = 0; same && d < v->ndim; d++) same = t->shape[d] == shape[d];
  if (same) return FL_OK;
  char got_s[200], want_s[200];
  fl_shape_format(got_s, sizeof got_s, t->ndim, t->shape);
  fl_shape_format(want_s, sizeof want_s, v->ndim, shape);
  return fl_fail(e, FL_EINVAL, "output %d ('%s') has shape %s, expected %s", o + 1, v->name,
                 got_s, want_s);
}

/* Both on one device (checked before): do their bytes overlap? */
static int overlap(const fl_tensor *a, const fl_tensor *b) {
  uint64_t na = fl_tensor_nbytes(a), nb = fl_tensor_nbytes(b);
  return na && nb && a->dptr < b->dptr + nb && b->dptr < a->dptr + na;
}

/* The kernels read the inputs while they write the outputs, so a given
 * output shares memory with no input and no other output. */
static fl_status check_given(const fl_cuda_exec *x, const fl_graph *g, const fl_tensor *in,
                             const fl_tensor *given, fl_err *e) {
  for (int o = 0; o < g->noutputs; o++) {
    fl_status s = check_given_one(x, g, o, &given[o], e);
    if (s != FL_OK) return s;
    for (int i = 0; i < g->ninputs; i++)
      if (overlap(&given[o], &in[i]))
        return fl_fail(e, FL_EINVAL, "output %d is the memory of input %d ('%s'); give it a "
                       "tensor of its own", o + 1, i + 1, g->vals[i].name);
    for (int p = 0; p < o; p++)
      if (overlap(&given[o], &given[p]))
        return fl_fail(e, FL_EINVAL, "outputs %d and %d are the same memory; give each a tensor "
                       "of its own", p + 1, o + 1);
  }
  return FL_OK;
}

/* Output o's value is an input, or an earlier output's (`return a, a`): no
 * kernel writes it where output o goes, a copy after the kernels does. */
static int copied_output(const fl_graph *g, int o) {
  if (g->outputs[o] < g->ninputs) return 1;
  for (int p = 0; p < o; p++)
    if (g->outputs[p] == g->outputs[o]) return 1;
  return 0;
}

/* Output o's memory: given[o]'s, or outs[o], allocated. */
static fl_status output_buffer(fl_cuda_exec *x, const fl_graph *g, int o, const fl_tensor *given,
                               fl_tensor *outs, buffers *b, fl_err *e) {
  if (given) {
    b->out[o] = given[o].dptr;
    return FL_OK;
  }
  int64_t shape[FL_MAX_DIMS];
  output_shape(g, o, shape);
  fl_dtype dt = fl_cuda_storage(g, g->outputs[o], x->out_dtype);
  fl_device dev = {FL_CUDA, x->ordinal};
  fl_status s = fl_tensor_alloc(&outs[o], dt, dev, g->vals[g->outputs[o]].ndim, shape, e);
  if (s == FL_OK) b->out[o] = outs[o].dptr;
  return s;
}

static fl_status alloc_buffers(fl_cuda_exec *x, const fl_graph *g, const fl_tensor *in,
                               const fl_tensor *given, fl_tensor *outs, buffers *b, fl_err *e) {
  b->ptr = calloc((size_t)g->nvals + 1, sizeof *b->ptr);
  if (!b->ptr) return fl_fail(e, FL_ENOMEM, "out of host memory");
  for (int i = 0; i < g->ninputs; i++) b->ptr[i] = in[i].dptr;
  for (int o = 0; o < g->noutputs; o++) {
    fl_status s = output_buffer(x, g, o, given, outs, b, e);
    if (s != FL_OK) return s;
    if (!copied_output(g, o)) b->ptr[g->outputs[o]] = b->out[o];
  }
  for (int v = g->ninputs; v < g->nvals; v++) {
    if (b->ptr[v] || g->vals[v].tile_local) continue;
    size_t bytes = (size_t)fl_value_numel(g, v) * sizeof(double);
    if (!x->keep[v]) {
      fl_status s = fl_cuda_alloc(x->ordinal, bytes ? bytes : 8, &x->keep[v], e);
      if (s != FL_OK) return s;
    }
    b->ptr[v] = x->keep[v];
  }
  fl_status s = x->err ? FL_OK : fl_cuda_alloc(x->ordinal, sizeof(int), &x->err, e);
  b->err = x->err;
  if (s == FL_OK) s = fl_cuda_memset(x->ordinal, b->err, 0, 4, 1, e);
  return s;
}

static fl_status copy_outputs(const fl_cuda_exec *x, const fl_graph *g, const buffers *b,
                              fl_err *e) {
  for (int o = 0; o < g->noutputs; o++) {
    if (!copied_output(g, o)) continue;
    int v = g->outputs[o];
    size_t bytes = (size_t)fl_value_numel(g, v) * fl_dtype_size(fl_cuda_storage(g, v, x->out_dtype));
    fl_status s = fl_cuda_device_copy(x->ordinal, b->out[o], b->ptr[v], bytes, e);
    if (s != FL_OK) return s;
  }
  return FL_OK;
}

static void free_buffers(buffers *b) { free(b->ptr); }

static fl_dtype storage_of(const fl_graph *g, int v, void *ctx) {
  return fl_cuda_storage(g, v, ((const fl_cuda_exec *)ctx)->out_dtype);
}

/* The grid rows a kernel's parts take beyond its blocks: the first part
 * of each of the tail blocks is that block, the others come after. */
static unsigned extra_rows(const fl_cuda_kernel *kd, unsigned tail, unsigned parts) {
  return (unsigned)(((int64_t)tail * (parts - 1) + kd->grid[0] - 1) / kd->grid[0]);
}

/* Which of kernel kd's last blocks run in parts, and in how many
 * (fl_cuda_parts_choose; none where the grid's rows would pass 65535). */
static void run_parts(const fl_cuda_exec *x, const fl_cuda_kernel *kd, unsigned *tail, unsigned *parts) {
  *tail = 0, *parts = 1;
  if (!kd->parts.most || kd->persistent) return;
  fl_cuda_parts_choose((int64_t)kd->grid[0] * kd->grid[1], (int64_t)x->sms * kd->order.per_sm, kd->parts.most,
                       kd->parts.steps, tail, parts);
  if (kd->grid[1] + extra_rows(kd, *tail, *parts) > 65535) *tail = 0, *parts = 1;
}

/* A tensor-core kernel's flags: one int a grid position, the word "any",
 * and the counter its persistent blocks take tiles from; then its scratch
 * words. Zeroed when made, and the flags again only after a run flagged
 * rows (or, persistent, every run: the counter); the kernel leaves its
 * scratch's counters as it found them. */
static fl_status fix_buffer(fl_cuda_exec *x, const fl_cuda_kernel *kd, unsigned tail, unsigned parts, buffers *b,
                            fl_err *e) {
  size_t n = (size_t)(kd->threads > 0 ? kd->threads : 1);
  uint64_t *fix = &x->fix[kd->plan_kernel];
  const size_t all = n + 2 + (size_t)kd->scratch + (size_t)fl_cuda_parts_words(&kd->parts, (int64_t)n, tail, parts);
  int made = !*fix, zero = made || x->fix_dirty[kd->plan_kernel] || kd->persistent;
  fl_status s = made ? fl_cuda_alloc(x->ordinal, all * sizeof(int), fix, e) : FL_OK;
  if (s == FL_OK && zero) s = fl_cuda_memset(x->ordinal, *fix, 0, 4, made ? all : n + 2, e);
  if (s == FL_OK) x->fix_dirty[kd->plan_kernel] = 0;
  b->fix = *fix;
  b->nfix = (int64_t)n;
  return s;
}

/* Its extra arguments: schedule (tile classes, bounds, block order), fixup flags and parts (run_parts). */
static fl_status extra_args(fl_cuda_exec *x, const fl_cuda_kernel *kd, unsigned tail, unsigned parts, buffers *b,
                            uint64_t *args, int *n, fl_err *e) {
  fl_status s = FL_OK;
  if (kd->schedule) {
    fl_cuda_sched *sc = &x->sched[kd->plan_kernel];
    if (sc->per_run)
      s = fl_cuda_sched_run(&x->plan->k[kd->plan_kernel], x->ordinal, b->ptr, storage_of, x, sc, e);
    args[(*n)++] = sc->tab;
    args[(*n)++] = sc->bnd;
    args[(*n)++] = sc->ord;
  }
  if (kd->fix == 1 && s == FL_OK) s = fix_buffer(x, kd, tail, parts, b, e);
  if (kd->fix) {
    int after_mma = kd->fix == 2 && b->fix && b->fix_kernel == kd->plan_kernel;
    args[(*n)++] = kd->fix == 1 || after_mma ? b->fix : 0;
    if (kd->fix == 1) b->fix_kernel = kd->plan_kernel;
  }
  if (kd->parts.most) args[(*n)++] = tail | parts << 24;
  return s;
}

/* A group's scalar kernel after its tensor-core kernel: needed only when
 * that flagged rows (the word after the flags says whether any; reading it
 * waits for the kernels before, a fault named as the last one's). */
static fl_status fixup_needed(fl_cuda_exec *x, const fl_cuda_kernel *kd, const buffers *b, int last,
                              int *needed, fl_err *e) {
  *needed = 1;
  if (kd->fix != 2 || !b->fix || b->fix_kernel != kd->plan_kernel) return FL_OK;
  fl_status s = last >= 0 ? fl_cuda_launch_wait(&x->fn[last], NULL, e) : FL_OK;
  if (s == FL_OK) s = fl_cuda_to_host(x->ordinal, needed, b->fix + (uint64_t)b->nfix * sizeof(int), sizeof(int), e);
  if (s == FL_OK && *needed) x->fix_dirty[kd->plan_kernel] = 1;
  return s;
}

/* A kernel's launch made ready: its arguments, pointers to them (as
 * cuLaunchKernel takes them) and its tensor maps, which they point into. */
typedef struct prepared {
  fl_cuda_tensor_map maps[FL_CUDA_MAX_TMAPS];
  uint64_t args[FL_CUDA_MAX_PARAMS + 8]; /* the values', then schedule, flags, parts, error */
  void *params[FL_CUDA_MAX_PARAMS + 8 + FL_CUDA_MAX_TMAPS];
  unsigned grid[3], block[3], smem;
} prepared;

static fl_status prepare(fl_cuda_exec *x, int k, buffers *b, prepared *L, fl_err *e) {
  const fl_cuda_kernel *kd = &x->prog.k[k];
  int n = 0;
  for (int a = 0; a < kd->nparams; a++) L->args[n++] = b->ptr[kd->param[a]];
  unsigned tail, parts;
  run_parts(x, kd, &tail, &parts);
  fl_status s = extra_args(x, kd, tail, parts, b, L->args, &n, e);
  if (s != FL_OK) return s;
  L->args[n++] = b->err;
  for (int a = 0; a < n; a++) L->params[a] = &L->args[a];
  for (int t = 0; t < kd->ntmaps && s == FL_OK; t++) {
    const fl_cuda_tmap *d = &kd->tmap[t];
    s = fl_cuda_tensor_map_encode(&L->maps[t], d->f16, b->ptr[d->value], 3, d->dims, d->strides, d->box, e);
    L->params[n++] = &L->maps[t];
  }
  if (s != FL_OK) return s;
  if (kd->block[0]) {
    memcpy(L->grid, kd->grid, sizeof L->grid), memcpy(L->block, kd->block, sizeof L->block);
    if (kd->persistent && L->grid[0] > (unsigned)x->sms) L->grid[0] = (unsigned)x->sms; /* blocks loop over the tiles */
    L->grid[1] += extra_rows(kd, tail, parts);
    L->smem = (unsigned)kd->smem;
    return FL_OK;
  }
  int64_t blocks = (kd->threads + BLOCK - 1) / BLOCK;
  if (blocks > 0x7fffffff) return fl_fail(e, FL_EINVAL, "kernel %s: too many threads", kd->name);
  L->grid[0] = (unsigned)blocks, L->grid[1] = L->grid[2] = 1;
  L->block[0] = BLOCK, L->block[1] = L->block[2] = 1;
  L->smem = 0;
  return FL_OK;
}

/* The run's kernels, one after the other on the default stream without
 * waiting between them (but to read a fixup word). The timer covers the
 * device from the first launch to the last kernel's end: the first
 * kernel's arguments (tensor maps, tile classes of masks over data) are
 * made before it starts, the others' while the kernels before them run. */
static fl_status launch_all(fl_cuda_exec *x, buffers *b, fl_err *e) {
  prepared L; /* one kernel's at a time: the launch copies what it points to */
  fl_status s = FL_OK;
  int last = -1, needed;
  for (int k = 0; s == FL_OK && k < x->prog.nkernels; k++) {
    s = fixup_needed(x, &x->prog.k[k], b, last, &needed, e);
    if (s != FL_OK || !needed) continue;
    s = prepare(x, k, b, &L, e);
    if (s != FL_OK || !L.grid[0]) continue;
    if (last < 0) s = fl_cuda_timer_start(x->ordinal, &x->timer, e);
    if (s == FL_OK) s = fl_cuda_launch_async(&x->fn[k], L.grid, L.block, L.smem, NULL, L.params, e);
    /* marked after each launch: a fixup check after it waits on the host, and the stream idles meanwhile
     * (marked once after the loop, sliding windows' 0.12 ms read 10-14% slower) */
    if (s == FL_OK) s = fl_cuda_timer_mark(&x->timer, e);
    if (s == FL_OK) last = k;
  }
  if (s == FL_OK && last >= 0) s = fl_cuda_launch_wait(&x->fn[last], NULL, e);
  float ms = 0;
  if (s == FL_OK && last >= 0) s = fl_cuda_timer_stop(&x->timer, &ms, e);
  if (s == FL_OK) x->last_ms = ms;
  return s;
}

fl_status fl_cuda_exec_run(fl_cuda_exec *x, const fl_graph *g, const fl_tensor *inputs,
                           const fl_tensor *given, fl_tensor *outs, fl_err *e) {
  buffers b = {0};
  if (!given) memset(outs, 0, (size_t)g->noutputs * sizeof *outs);
  fl_status s = check_inputs(x, g, inputs, e);
  if (s == FL_OK && given) s = check_given(x, g, inputs, given, e);
  if (s == FL_OK) s = fl_cuda_use(x->ordinal, e);
  if (s == FL_OK) s = alloc_buffers(x, g, inputs, given, outs, &b, e);
  x->last_ms = -1;
  if (s == FL_OK) s = launch_all(x, &b, e);
  if (s == FL_OK) s = copy_outputs(x, g, &b, e);
  int flag = 0;
  if (s == FL_OK) s = fl_cuda_to_host(x->ordinal, &flag, b.err, sizeof flag, e);
  if (s == FL_OK && flag)
    s = fl_fail(e, FL_EINVAL, "a load's index fell outside its dimension (a gather or a "
                "data-dependent index out of range)");
  free_buffers(&b);
  if (s != FL_OK && !given)
    for (int o = 0; o < g->noutputs; o++) fl_tensor_free(&outs[o]);
  return s;
}
