/* A growing string. */
#include "fl_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void fl_text_put(fl_text *t, const char *fmt, ...) {
  if (t->failed) return;
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n >= 0 && t->len + (size_t)n + 1 > t->cap) {
    size_t ncap = (t->cap ? t->cap * 2 : 1024) + (size_t)n;
    char *p = realloc(t->s, ncap);
    if (p) {
      t->s = p;
      t->cap = ncap;
    } else {
      t->failed = 1;
    }
  }
  if (n >= 0 && !t->failed) {
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, again);
    t->len += (size_t)n;
  }
  va_end(again);
}

char *fl_text_take(fl_text *t) {
  char *s = t->failed ? NULL : t->s ? t->s : calloc(1, 1);
  if (t->failed) free(t->s);
  *t = (fl_text){0};
  return s;
}
