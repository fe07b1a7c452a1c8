/* Printing the Hopper products of a tensor-core kernel (see
 * core/fl_cuda_wgmma.h). */
#include "fl_cuda_wgmma.h"

#include <stdio.h>

#define line(c, ...) fl_cx_line(c, __VA_ARGS__)

/* The matrix descriptor: start address, leading and stride byte offsets
 * (>> 4), 128-byte swizzle. The stride offset is 1024: eight 128-byte rows
 * of a panel. The leading offset matters only for the MN-major operand,
 * where it is the distance between panels. A tile's later slices add
 * their offset >> 4 to the start address field (the low 14 bits: shared
 * memory addresses stay under 256 KB, so the sum never carries out). */
static const char WGMMA_PRELUDE[] =
  "__device__ __forceinline__ void fl_wg_keep(float &x) { asm volatile(\"\" : \"+f\"(x) :: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_arrive() { asm volatile(\"wgmma.fence.sync.aligned;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_commit() { asm volatile(\"wgmma.commit_group.sync.aligned;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ void fl_wg_keepu(unsigned &x) { asm volatile(\"\" : \"+r\"(x) :: \"memory\"); }\n"
  "/* until at most N committed groups are in flight */\n"
  "template <int N> __device__ __forceinline__ void fl_wg_wait() {\n"
  "  asm volatile(\"wgmma.wait_group.sync.aligned %0;\" :: \"n\"(N) : \"memory\");\n}\n"
  "/* shared memory written by ordinary copies, next read by wgmma */\n"
  "__device__ __forceinline__ void fl_proxy_fence() { asm volatile(\"fence.proxy.async.shared::cta;\" ::: \"memory\"); }\n"
  "__device__ __forceinline__ unsigned long long fl_wg_desc(unsigned addr, unsigned lbo) {\n"
  "  return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)((lbo & 0x3FFFFu) >> 4) << 16)\n"
  "       | (64ull << 32) | (1ull << 62);\n}\n"
  /* warp-specialized kernels: tensor maps, mbarriers, TMA loads, register budgets */
  "struct __align__(64) fl_tmap { unsigned long long w[16]; };\n"
  "__device__ __forceinline__ void fl_bar_init(unsigned b, unsigned n) {\n"
  "  asm volatile(\"mbarrier.init.shared::cta.b64 [%0], %1;\" :: \"r\"(b), \"r\"(n) : \"memory\");\n}\n"
  "__device__ __forceinline__ void fl_bar_init_done() {\n"
  "  asm volatile(\"fence.mbarrier_init.release.cluster;\\nfence.proxy.async.shared::cta;\" ::: \"memory\");\n}\n"
  "__device__ __forceinline__ void fl_bar_expect(unsigned b, unsigned bytes) {\n"
  "  asm volatile(\"mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\" :: \"r\"(b), \"r\"(bytes) : \"memory\");\n}\n"
  "__device__ __forceinline__ void fl_bar_arrive(unsigned b) {\n"
  "  asm volatile(\"mbarrier.arrive.shared::cta.b64 _, [%0];\" :: \"r\"(b) : \"memory\");\n}\n"
  "/* until the phase of parity ph has completed */\n"
  "__device__ __forceinline__ void fl_bar_wait(unsigned b, unsigned ph) {\n"
  "  unsigned ok = 0;\n"
  "  while (!ok)\n"
  "    asm volatile(\"{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }\"\n"
  "                 : \"=r\"(ok) : \"r\"(b), \"r\"(ph) : \"memory\");\n}\n"
  "/* box (x, y, z) of tensor map m into shared memory at dst, completing on barrier b */\n"
  "__device__ __forceinline__ void fl_tma3(unsigned dst, const fl_tmap *m, int x, int y, int z, unsigned b) {\n"
  "  asm volatile(\"cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\"\n"
  "               :: \"r\"(dst), \"l\"(m), \"r\"(x), \"r\"(y), \"r\"(z), \"r\"(b) : \"memory\");\n}\n"
  "/* clusters: the same box into every block of the cluster in `mask`, completing on each one's barrier b */\n"
  "__device__ __forceinline__ void fl_tma3_mc(unsigned dst, const fl_tmap *m, int x, int y, int z, unsigned b, unsigned short mask) {\n"
  "  asm volatile(\"cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3, %4}], [%5], %6;\"\n"
  "               :: \"r\"(dst), \"l\"(m), \"r\"(x), \"r\"(y), \"r\"(z), \"r\"(b), \"h\"(mask) : \"memory\");\n}\n"
  "/* an arrival on barrier b of block `peer` of the cluster */\n"
  "__device__ __forceinline__ void fl_bar_arrive_peer(unsigned b, unsigned peer) {\n"
  "  asm volatile(\"{ .reg .b32 r; mapa.shared::cluster.u32 r, %0, %1; mbarrier.arrive.shared::cluster.b64 _, [r]; }\"\n"
  "               :: \"r\"(b), \"r\"(peer) : \"memory\");\n}\n"
  "__device__ __forceinline__ void fl_cluster_sync() {\n"
  "  asm volatile(\"barrier.cluster.arrive.release;\\nbarrier.cluster.wait.acquire;\" ::: \"memory\");\n}\n"
  "/* persistent kernels: the tile a block takes next, from a counter in global memory, told through shared memory */\n"
  "__device__ __forceinline__ unsigned fl_take(int *c) {\n"
  "  unsigned r; asm volatile(\"atom.global.add.u32 %0, [%1], 1;\" : \"=r\"(r) : \"l\"(c) : \"memory\"); return r;\n}\n"
  "__device__ __forceinline__ void fl_sts32(unsigned a, unsigned x) { asm volatile(\"st.shared.u32 [%0], %1;\" :: \"r\"(a), \"r\"(x) : \"memory\"); }\n"
  "__device__ __forceinline__ unsigned fl_lds32(unsigned a) {\n"
  "  unsigned x; asm volatile(\"ld.shared.u32 %0, [%1];\" : \"=r\"(x) : \"r\"(a) : \"memory\"); return x;\n}\n"
  "/* named barriers 1..: the computing warpgroups take turns to issue */\n"
  "__device__ __forceinline__ void fl_named_sync(int id, int n) { asm volatile(\"bar.sync %0, %1;\" :: \"r\"(id), \"r\"(n) : \"memory\"); }\n"
  "__device__ __forceinline__ void fl_named_arrive(int id, int n) { asm volatile(\"bar.arrive %0, %1;\" :: \"r\"(id), \"r\"(n) : \"memory\"); }\n"
  "template <int N> __device__ __forceinline__ void fl_regs_dec() { asm volatile(\"setmaxnreg.dec.sync.aligned.u32 %0;\" :: \"n\"(N)); }\n"
  "template <int N> __device__ __forceinline__ void fl_regs_inc() { asm volatile(\"setmaxnreg.inc.sync.aligned.u32 %0;\" :: \"n\"(N)); }\n\n";

const char *fl_cuda_wgmma_prelude(void) { return WGMMA_PRELUDE; }

static const char *type_name(fl_dtype dt) { return dt == FL_BF16 ? "bf16" : "f16"; }

static const char *kind_name(fl_wgmma_kind k) { return k == FL_WGMMA_SS ? "ss" : k == FL_WGMMA_RS ? "rs" : "rst"; }

void fl_cuda_wgmma_put_fn(fl_text *b, fl_wgmma_kind kind, fl_dtype dt, int n) {
  const char *T = type_name(dt), *K = kind_name(kind);
  int rs = kind != FL_WGMMA_SS, nd = n / 2, a = nd, desc = rs ? nd + 4 : nd + 1, scale = desc + 1;
  fl_text_put(b, "#ifndef FL_WGMMA_%s_%s_%d\n#define FL_WGMMA_%s_%s_%d\n", K, T, n, K, T, n);
  fl_text_put(b, "__device__ __forceinline__ void fl_wgmma_%s_%s_%d(float *d, %s, unsigned long long b) {\n", K, T,
              n, rs ? "const unsigned *a" : "unsigned long long a");
  fl_text_put(b, "  asm volatile(\"{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n\"\n", scale);
  fl_text_put(b, "    \"wgmma.mma_async.sync.aligned.m64n%dk16.f32.%s.%s {", n, T, T);
  for (int i = 0; i < nd; i++) fl_text_put(b, "%s%%%d", i ? ", " : "", i);
  if (rs)
    fl_text_put(b, "}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, 1, 1, %d;\\n}\\n\"\n", a, a + 1, a + 2, a + 3, desc,
                kind == FL_WGMMA_RST);
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

static void put_keep(fl_cx *c, const char *acc, int64_t n, const char *fn) {
  line(c, "#pragma unroll"); /* j: the step loop around counts in i */
  line(c, "for (int j = 0; j < %lld; ++j) %s((&%s[0][0])[j]);", (long long)n, fn, acc);
}

void fl_cuda_wgmma_put_q_fragments(fl_cx *c, const char *qf, const char *tile, int64_t rows, int width) {
  char at[200];
  fl_cuda_wgmma_chunk_at(at, sizeof at, rows, "warp * 16 + (lane & 15)", "kk * 2 + (lane >> 4)");
  line(c, "unsigned %s[%d][4];", qf, width / 16);
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %d; ++kk) fl_ldm4(%s[kk], %s + (unsigned)(%s));", width / 16, qf, tile, at);
}

/* The accumulators zeroed, then added to: a first wgmma with scale-d 0
 * instead measured no faster on the H100 (within 2% for full, causal,
 * ALiBi, softcap, sinks) and made document D=128 spill 28 bytes (161 / 247
 * TFLOP/s against 178 / 283, B4 N4096 / B1 N16384). */
void fl_cuda_wgmma_put_scores(fl_cx *c, fl_dtype dt, const char *acc, const char *q, int q_regs, int q_rows,
                              const char *k, int width, int64_t step) {
  line(c, "#pragma unroll");
  line(c, "for (int nt = 0; nt < %lld; ++nt) %s[nt][0] = %s[nt][1] = %s[nt][2] = %s[nt][3] = 0.0f;",
       (long long)(step / 8), acc, acc, acc, acc);
  line(c, "{");
  c->depth++;
  /* a block of one warpgroup's rows: no offset (wg is 0, but ptxas cannot know it; sliding windows and
   * document masks ran 1-3% faster so, H100 2026-11-24) */
  if (!q_regs && q_rows > 64) line(c, "const unsigned long long dq = fl_wg_desc(%s + wg * %du, 16u);", q, 64 * 128);
  else if (!q_regs) line(c, "const unsigned long long dq = fl_wg_desc(%s, 16u); /* a warpgroup's rows a block */", q);
  line(c, "const unsigned long long dk = fl_wg_desc(%s, 16u);", k);
  line(c, "fl_wg_arrive();");
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %d; ++kk)", width / 16);
  if (q_regs)
    line(c, "  fl_wgmma_rs_%s_%lld(&%s[0][0], %s[kk],", type_name(dt), (long long)step, acc, q);
  else
    line(c, "  fl_wgmma_ss_%s_%lld(&%s[0][0], dq + (unsigned)(((kk >> 2) * %d + (kk & 3) * 32) >> 4),",
         type_name(dt), (long long)step, acc, q_rows * 128);
  line(c, "    dk + (unsigned)(((kk >> 2) * %lld + (kk & 3) * 32) >> 4));", (long long)step * 128);
  line(c, "fl_wg_commit();");
  c->depth--;
  line(c, "}");
}

void fl_cuda_wgmma_put_wait(fl_cx *c, int pending, const char *acc, int64_t n) {
  line(c, "fl_wg_wait<%d>();", pending);
  put_keep(c, acc, n, "fl_wg_keep");
}

void fl_cuda_wgmma_put_pack_tile(fl_cx *c, fl_dtype dt, const char *pk, const char *p) {
  const char *T = type_name(dt);
  line(c, "%s[nt >> 1][(nt & 1) * 2] = fl_pack_%s(%s[nt][0], %s[nt][1]);", pk, T, p, p);
  line(c, "%s[nt >> 1][(nt & 1) * 2 + 1] = fl_pack_%s(%s[nt][2], %s[nt][3]);", pk, T, p, p);
}

void fl_cuda_wgmma_put_product(fl_cx *c, fl_dtype dt, const char *acc, const char *pk, const char *v, int width,
                               int64_t step, const char *ones) {
  line(c, "{");
  c->depth++;
  if (ones) line(c, "const unsigned long long dv = fl_wg_desc(%s, %s - (%s)); /* the next panel: ones */", v, ones, v);
  else line(c, "const unsigned long long dv = fl_wg_desc(%s, %lldu);", v, (long long)step * 128);
  line(c, "fl_wg_arrive();");
  line(c, "#pragma unroll");
  line(c, "for (int kk = 0; kk < %lld; ++kk)", (long long)(step / 16));
  line(c, "  fl_wgmma_rst_%s_%d(&%s[0][0], %s[kk], dv + (unsigned)(kk * (2048 >> 4)));", type_name(dt),
       width + (ones ? 8 : 0), acc, pk);
  line(c, "fl_wg_commit();");
  c->depth--;
  line(c, "}");
}

void fl_cuda_wgmma_put_keep_weights(fl_cx *c, const char *pk, int64_t step) {
  put_keep(c, pk, step / 4, "fl_wg_keepu");
}
