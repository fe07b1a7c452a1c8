/* A growing string: dumps and pass logs are written into one. */
#ifndef FL_TEXT_H
#define FL_TEXT_H

#include <stddef.h>

typedef struct fl_text {
  char *s;
  size_t len, cap;
  int failed; /* out of memory: later writes do nothing */
} fl_text;

void fl_text_put(fl_text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The string, owned by the caller, or NULL when memory ran out. */
char *fl_text_take(fl_text *t);

#endif
