/* Printing the Hopper products of a tensor-core kernel (see
 * core/fl_cuda_wgmma.h). */
#include "fl_cuda_wgmma.h"

#include <stdio.h>

#define line(c, ...) fl_cx_line(c, __VA_ARGS__)

/* The matrix descriptor: start address, leading and stride byte offsets
 * (>> 4), 128-byte swizzle. The stride offset is 1024: eight 128-byte rows
 * of a panel. The leading offset matters only for the MN-major operand,
 * where it is the distance between panels. */
static const char WGMMA_PRELUDE[] =
  "__device__ __forceinline__ void fl_wg_keep(float &x) { asm volatile(\"\" : \"+f\"(x) :: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_arrive() { asm volatile(\"wgmma.fence.sync.aligned;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_commit() { asm volatile(\"wgmma.commit_group.sync.aligned;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_wait() { asm volatile(\"wgmma.wait_group.sync.aligned 0;\" ::: \"memory\"); }\n"
  "/* shared memory written by ordinary copies, next read by wgmma */\n"
  "__device__ __forceinline__ void fl_proxy_fence() { asm volatile(\"fence.proxy.async.shared::cta;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ unsigned long long fl_wg_desc(unsigned addr, unsigned lbo) {\n"
  "  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16)\n"
  "       | (64ull << 32) | (1ull << 62);\n}\n\n";

const char *fl_cuda_wgmma_prelude(void) { return WGMMA_PRELUDE; }

static const char *type_name(fl_dtype dt) { return dt == FL_BF16 ? "bf16" : "f16"; }

void fl_cuda_wgmma_put_fn(fl_text *b, int rs, fl_dtype dt, int n) {
  const char *T = type_name(dt), *kind = rs ? "rs" : "ss";
  int nd = n / 2, a = nd, desc = rs ? nd + 4 : nd + 1, scale = desc + 1;
  fl_text_put(b, "#ifndef FL_WGMMA_%s_%s_%d\n#define FL_WGMMA_%s_%s_%d\n", kind, T, n, kind, T, n);
  fl_text_put(b, "__device__ __forceinline__ void fl_wgmma_%s_%s_%d(float *d, %s, unsigned long long b) {\n", kind, T,
              n, rs ? "const unsigned *a" : "unsigned long long a");
  fl_text_put(b, "  asm volatile(\"{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n\"\n", scale);
  fl_text_put(b, "    \"wgmma.mma_async.sync.aligned.m64n%dk16.f32.%s.%s {", n, T, T);
  for (int i = 0; i < nd; i++) fl_text_put(b, "%s%%%d", i ? ", " : "", i);
  if (rs) fl_text_put(b, "}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, 1, 1, 1;\\n}\\n\"\n", a, a + 1, a + 2, a + 3, desc);
  else fl_text_put(b, "}, %%%d, %%%d, p, 1, 1, 0, 0;\\n}\\n\"\n", a, desc);
  fl_text_put(b, "    :");
  for (int i = 0; i < nd; i++) fl_text_put(b, "%s \"+f\"(d[%d])", i ? "," : "", i);
  fl_text_put(b, "\n    :");
  if (rs) fl_text_put(b, " \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]),");
  else fl_text_put(b, " \"l\"(a),");
  fl_text_put(b, " \"l\"(b), \"r\"(1));\n}\n#endif\n");
}

void fl_cuda_wgmma_chunk_at(char *buf, size_t n, int64_t rows, const char *r, const char *ch) {
  snprintf(buf, n, "((%s) >> 3) * %lld + (%s) * 128 + ((((%s) & 7) ^ ((%s) & 7)) << 4)", ch, (long long)rows * 128,
           r, ch, r);
}

static void put_keep(fl_cx *c, const char *acc, int64_t n) {
  line(c, "#pragma unroll");
  line(c, "for (int i = 0; i < %lld; ++i) fl_wg_keep((&%s[0][0])[i]);", (long long)n, acc);
}

void fl_cuda_wgmma_put_scores(fl_cx *c, fl_dtype dt, const char *acc, int q, int q_rows, int k, int width,
                              int64_t step) {
  line(c, "float %s[%lld][4];", acc, (long long)(step / 8));
  line(c, "#pragma unroll");
  line(c, "for (int nt = 0; nt < %lld; ++nt) %s[nt][0] = %s[nt][1] = %s[nt][2] = %s[nt][3] = 0.0f;",
       (long long)(step / 8), acc, acc, acc, acc);
  line(c, "fl_wg_arrive();");
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %d; ++kk)", width / 16);
  line(c, "  fl_wgmma_ss_%s_%lld(&%s[0][0], fl_wg_desc(so%d + (unsigned)((kk >> 2) * %d + wg * %d + (kk & 3) * 32), 16u),",
       type_name(dt), (long long)step, acc, q, q_rows * 128, 64 * 128);
  line(c, "    fl_wg_desc(so%d + (unsigned)((kk >> 2) * %lld + (kk & 3) * 32), 16u));", k, (long long)step * 128);
  line(c, "fl_wg_commit();");
  line(c, "fl_wg_wait();");
  put_keep(c, acc, step / 2);
}

void fl_cuda_wgmma_put_product(fl_cx *c, fl_dtype dt, const char *acc, const char *p, int v, int width,
                               int64_t step) {
  const char *T = type_name(dt);
  line(c, "{");
  c->depth++;
  line(c, "unsigned pk[%lld][4];", (long long)(step / 16));
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %lld; ++kk) {", (long long)(step / 16));
  line(c, "  pk[kk][0] = fl_pack_%s(%s[2 * kk][0], %s[2 * kk][1]), pk[kk][1] = fl_pack_%s(%s[2 * kk][2], %s[2 * kk][3]);",
       T, p, p, T, p, p);
  line(c, "  pk[kk][2] = fl_pack_%s(%s[2 * kk + 1][0], %s[2 * kk + 1][1]), pk[kk][3] = fl_pack_%s(%s[2 * kk + 1][2], %s[2 * kk + 1][3]);",
       T, p, p, T, p, p);
  line(c, "}");
  line(c, "fl_wg_arrive();");
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %lld; ++kk)", (long long)(step / 16));
  line(c, "  fl_wgmma_rs_%s_%d(&%s[0][0], pk[kk], fl_wg_desc(so%d + (unsigned)(kk * 2048), %lldu));", T, width, acc, v,
       (long long)step * 128);
  line(c, "fl_wg_commit();");
  line(c, "fl_wg_wait();");
  put_keep(c, acc, width / 2);
  c->depth--;
  line(c, "}");
}
