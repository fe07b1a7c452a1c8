#include <stdio.h>
#include <string.h>

#include "fl_test.h"

static fl_test_case *cases;

void fl_test_register(fl_test_case *c) {
  c->next = cases;
  cases = c;
}

/* Runs every registered test, or only those whose name contains argv[1]. */
int main(int argc, char **argv) {
  int passed = 0, failed = 0;
  for (fl_test_case *c = cases; c; c = c->next) {
    if (argc > 1 && !strstr(c->name, argv[1])) continue;
    int f = 0;
    c->fn(&f);
    printf("%s %s\n", f ? "not ok" : "ok", c->name);
    if (f) failed++; else passed++;
  }
  printf("core: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
