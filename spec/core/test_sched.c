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
