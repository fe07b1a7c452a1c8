#include "fl_error.h"

#include <stdarg.h>
#include <stdio.h>

fl_status fl_fail(fl_err *e, fl_status s, const char *fmt, ...) {
  if (e) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = s;
  }
  return s;
}

void fl_err_clear(fl_err *e) {
  if (e) {
    e->status = FL_OK;
    e->msg[0] = '\0';
  }
}
