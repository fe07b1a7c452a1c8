/* The bounds the tensor-core kernels read: each block's loop bounds, then
 * its longest run of tiles known full. */
#include <stdlib.h>

#include "fl_cuda_sched.h"
#include "fl_test.h"

enum { S = FL_TILE_SKIP, P = FL_TILE_PARTIAL, F = FL_TILE_FULL };

FL_TEST(sched_runs_longest_known_full_within_bounds) {
  /* three blocks of six tiles, one mask truth a tile: class, truth */
  const signed char table[] = {
      F, 1, F, 1, P, 1, F, 1, F, 1, F, 1, /* the later run is longer */
      F, 1, F, 0, F, 1, F, 1, S, 0, F, 1, /* a condition false: not known full; the last tile past hi */
      S, 0, P, 1, P, 1, S, 0, S, 0, S, 0, /* none */
  };
  const int64_t bounds[] = {0, 6, 0, 5, 1, 3};
  int64_t *r = fl_cuda_sched_runs(1, 3, 6, table, bounds);
  CHECK(r != NULL);
  if (!r) return;
  const int64_t want[] = {0, 6, 3, 6, 0, 5, 2, 4, 1, 3, 1, 1};
  for (int i = 0; i < 12; i++) CHECK(r[i] == want[i]);
  free(r);
}

FL_TEST(sched_runs_without_masks_and_with_two) {
  const signed char one[] = {F, F, P, F};
  const int64_t b1[] = {1, 4};
  int64_t *r = fl_cuda_sched_runs(0, 1, 4, one, b1);
  CHECK(r && r[0] == 1 && r[1] == 4 && r[2] == 1 && r[3] == 2);
  free(r);
  /* two truths a tile: both must hold */
  const signed char two[] = {F, 1, 1, F, 1, 0, F, 1, 1, F, 1, 1};
  const int64_t b2[] = {0, 4};
  r = fl_cuda_sched_runs(2, 1, 4, two, b2);
  CHECK(r && r[2] == 2 && r[3] == 4);
  free(r);
}

static int order_is(const uint32_t *got, const uint32_t *want, int n) {
  for (int i = 0; got && i < n; i++)
    if (got[i] != want[i]) return 0;
  return got != NULL;
}

FL_TEST(sched_spans_union_of_the_rows_table_blocks) {
  /* blocks of 128 rows starting 64 before row 0, over table blocks of 64
   * rows; two heads, the table's rows outermost (head stride 1, row stride 2) */
  const fl_cuda_block_order o = {.slot = 0, .count = 3, .rows = 128, .pad = 64, .others = 2};
  const int64_t first[] = {0, 1};
  const int64_t b[] = {0, 9, 0, 1, /* row 0: heads 0 and 1 */
                       0, 1, 4, 5, /* row 1 */
                       2, 3, 5, 5, /* row 2, head 1 empty */
                       3, 3, 3, 3}; /* row 3 empty */
  int64_t *span = fl_cuda_sched_spans(&o, first, 2, 4, 64, b);
  CHECK(span != NULL);
  if (!span) return;
  /* head 0: block 0 holds row 0, block 1 rows 1 and 2 (0..3), block 2 row 3 */
  const int64_t want[] = {9, 3, 0, 1, 1, 0};
  for (int i = 0; i < 6; i++) CHECK(span[i] == want[i]);
  free(span);
}

FL_TEST(sched_order_chunks_longest_first_short_ones_last) {
  /* a causal mask's lengths, two heads in one chunk, room for one block:
   * the shortest blocks of both heads, as much work as the longest block
   * and one, run last */
  const fl_cuda_block_order o = {.count = 4, .others = 2, .chunk = 2};
  const int64_t causal[] = {1, 2, 3, 4, 1, 2, 3, 4};
  uint32_t *ord = fl_cuda_sched_order(&o, causal, 1);
  const uint32_t want[] = {3, 7, 2, 6, 1, 5, 0, 4};
  CHECK(order_is(ord, want, 8));
  free(ord);
  /* many slots: everything is short: longest first over all heads */
  ord = fl_cuda_sched_order(&o, causal, 100);
  CHECK(order_is(ord, want, 8));
  free(ord);
  /* chunks of one head; a long block at head 1's first rows (a long
   * document first) starts before the shortest blocks (of both heads, at
   * least its work and one more a block) */
  const fl_cuda_block_order c = {.count = 4, .others = 2, .chunk = 1};
  const int64_t docs[] = {2, 2, 2, 2, 9, 1, 1, 1};
  ord = fl_cuda_sched_order(&c, docs, 1);
  const uint32_t docs_want[] = {3, 2, 4, 1, 0, 7, 6, 5};
  CHECK(order_is(ord, docs_want, 8));
  free(ord);
}

FL_TEST(sched_parts_split_the_short_last_wave) {
  unsigned tail, parts;
  /* 1376 blocks of 128 steps on 132: a last wave of 56, in halves one
   * round of a half and 4/128 */
  fl_cuda_parts_choose(1376, 132, 4, 128, &tail, &parts);
  CHECK(tail == 56 && parts == 2);
  /* a last wave of 4: in quarters, one round of a quarter */
  fl_cuda_parts_choose(4096, 132, 4, 128, &tail, &parts);
  CHECK(tail == 4 && parts == 4);
  fl_cuda_parts_choose(4096, 132, 2, 128, &tail, &parts);
  CHECK(tail == 4 && parts == 2);
  /* a last wave of 68: thirds take two rounds of 1/3 + 4/128, saving
   * less than FL_PARTS_GAIN; of 32 steps, 1/3 + 1/8 */
  fl_cuda_parts_choose(2048, 132, 4, 128, &tail, &parts);
  CHECK(tail == 0 && parts == 1);
  fl_cuda_parts_choose(2048, 132, 4, 32, &tail, &parts);
  CHECK(tail == 0 && parts == 1);
  /* a last wave of 124 (of 132) or whole waves: no count ends it sooner */
  fl_cuda_parts_choose(256, 132, 4, 128, &tail, &parts);
  CHECK(tail == 0 && parts == 1);
  fl_cuda_parts_choose(264, 132, 4, 128, &tail, &parts);
  CHECK(tail == 0 && parts == 1);
  fl_cuda_parts_choose(100, 132, 0, 128, &tail, &parts);
  CHECK(tail == 0 && parts == 1);
  /* the words: tickets from the next multiple of 32 after the flags and
   * two, then (from a multiple of 32) every piece's floats of 32 lanes */
  const fl_cuda_parts pt = {.most = 4, .warps = 8, .floats = 68};
  CHECK(fl_cuda_parts_words(&pt, 100, 0, 1) == 0);
  CHECK(fl_cuda_parts_words(&pt, 100, 68, 3) == 128 + 544 + 68 * 8 * 3 * 68 * 32 - 102);
}
