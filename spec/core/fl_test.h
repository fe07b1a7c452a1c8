/* A minimal C unit-test harness for the core: each test file defines
 * functions registered with FL_TEST; test_main.c runs them all and prints
 * "core: N passed, N failed". */
#ifndef FL_TEST_H
#define FL_TEST_H

#include <math.h>
#include <stdio.h>

typedef struct fl_test_case {
  const char *name;
  void (*fn)(int *failed);
  struct fl_test_case *next;
} fl_test_case;

void fl_test_register(fl_test_case *c);

#define FL_TEST(name)                                                        \
  static void name(int *fl_failed_);                                         \
  static fl_test_case name##_case_ = {#name, name, 0};                       \
  __attribute__((constructor)) static void name##_reg_(void) {               \
    fl_test_register(&name##_case_);                                         \
  }                                                                          \
  static void name(int *fl_failed_)

/* Records a failure with its file and line, and carries on. */
#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,     \
              #cond);                                                        \
      *fl_failed_ = 1;                                                       \
    }                                                                        \
  } while (0)

#define CHECK_NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))

#endif
