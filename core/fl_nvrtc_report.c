/* Reading NVRTC program logs: the per-kernel report of ptxas -v, and the
 * excerpt an error message shows.
 *
 * NVRTC 13 prints, per entry function:
 *   ptxas info    : Compiling entry function 'add' for 'sm_90'
 *   ptxas info    : Function properties for add
 *   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
 *   ptxas info    : Used 8 registers, used 0 barriers, 1024 bytes smem
 * and "Function properties" for non-entry (noinline) functions too, which
 * are not kernels and are skipped. */
#include <stdlib.h>
#include <string.h>

#include "fl_nvrtc.h"

/* The number written just before `what` in [line, end), or -1. */
static int number_before(const char *line, const char *end, const char *what) {
  size_t wn = strlen(what);
  for (const char *p = line; p + wn <= end; p++) {
    if (memcmp(p, what, wn) != 0) continue;
    const char *q = p;
    while (q > line && q[-1] == ' ') q--;
    const char *digits = q;
    while (digits > line && digits[-1] >= '0' && digits[-1] <= '9') digits--;
    if (digits == q) return -1;
    long v = strtol(digits, NULL, 10);
    return v > 0x7fffffff ? 0x7fffffff : (int)v;
  }
  return -1;
}

/* The text after `marker` in [line, end) up to `stop`, copied, or NULL. */
static char *field_after(const char *line, const char *end, const char *marker, char stop) {
  size_t mn = strlen(marker);
  for (const char *p = line; p + mn <= end; p++) {
    if (memcmp(p, marker, mn) != 0) continue;
    const char *s = p + mn, *t = s;
    while (t < end && *t != stop) t++;
    while (t > s && (t[-1] == ' ' || t[-1] == '\r')) t--;
    char *out = malloc((size_t)(t - s) + 1);
    if (out) {
      memcpy(out, s, (size_t)(t - s));
      out[t - s] = '\0';
    }
    return out;
  }
  return NULL;
}

static int find_kernel(const fl_kernel_report *k, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(k[i].name, name) == 0) return i;
  return -1;
}

static fl_status add_kernel(fl_kernel_report **k, int *n, int *cap, char *name, fl_err *e) {
  if (*n == *cap) {
    int ncap = *cap ? *cap * 2 : 4;
    fl_kernel_report *grown = realloc(*k, (size_t)ncap * sizeof *grown);
    if (!grown) {
      free(name);
      return fl_fail(e, FL_ENOMEM, "out of memory reading the ptxas report");
    }
    *k = grown;
    *cap = ncap;
  }
  (*k)[*n] = (fl_kernel_report){.name = name};
  (*n)++;
  return FL_OK;
}

static void read_properties(fl_kernel_report *k, const char *line, const char *end) {
  int v;
  if ((v = number_before(line, end, "bytes stack frame")) >= 0) k->stack = v;
  if ((v = number_before(line, end, "bytes spill stores")) >= 0) k->spill_stores = v;
  if ((v = number_before(line, end, "bytes spill loads")) >= 0) k->spill_loads = v;
}

static void read_usage(fl_kernel_report *k, const char *line, const char *end) {
  int v;
  if ((v = number_before(line, end, "registers")) >= 0) k->registers = v;
  if ((v = number_before(line, end, "bytes smem")) >= 0) k->shared = v;
}

fl_status fl_nvrtc_parse_report(const char *log, fl_kernel_report **out, int *n, fl_err *e) {
  fl_kernel_report *k = NULL;
  int nk = 0, cap = 0;
  int entry = -1, props = -1; /* the kernel the next lines describe */
  for (const char *line = log ? log : ""; *line;) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    char *name;
    if ((name = field_after(line, end, "Compiling entry function '", '\''))) {
      if (add_kernel(&k, &nk, &cap, name, e) != FL_OK) {
        fl_kernel_reports_free(k, nk);
        return FL_ENOMEM;
      }
      entry = nk - 1;
      props = -1;
    } else if ((name = field_after(line, end, "Function properties for ", '\n'))) {
      props = find_kernel(k, nk, name);
      free(name);
    } else if (props >= 0 && number_before(line, end, "bytes spill stores") >= 0) {
      read_properties(&k[props], line, end);
    } else if (entry >= 0 && number_before(line, end, "registers") >= 0) {
      read_usage(&k[entry], line, end);
    }
    line = *end ? end + 1 : end;
  }
  *out = k;
  *n = nk;
  return FL_OK;
}

void fl_kernel_reports_free(fl_kernel_report *k, int n) {
  for (int i = 0; i < n; i++) free(k[i].name);
  free(k);
}

static int is_info_line(const char *line, const char *end) {
  static const char *const prefixes[] = {"ptxas info", "ptxas         ."};
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    size_t pn = strlen(prefixes[i]);
    if ((size_t)(end - line) >= pn && memcmp(line, prefixes[i], pn) == 0) return 1;
  }
  return 0;
}

/* Appends [s, s + sn) to buf, which has room for it. */
static size_t put(char *buf, size_t len, const char *s, size_t sn) {
  memcpy(buf + len, s, sn);
  buf[len + sn] = '\0';
  return len + sn;
}

size_t fl_nvrtc_log_excerpt(const char *log, char *buf, size_t n) {
  static const char cut[] = "\n[... log cut]";
  size_t len = 0, room = n > sizeof cut ? n - sizeof cut : 0; /* keeps space for the note */
  buf[0] = '\0';
  for (const char *line = log ? log : ""; *line;) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    size_t ln = (size_t)(end - line), sep = len > 0;
    if (ln > 0 && !is_info_line(line, end)) {
      if (len + sep + ln > room) {
        if (len == 0 && room > 0) len = put(buf, len, line, room); /* one long line: its start */
        if (len + sizeof cut <= n) len = put(buf, len, cut, sizeof cut - 1);
        break;
      }
      if (sep) len = put(buf, len, "\n", 1);
      len = put(buf, len, line, ln);
    }
    line = *end ? end + 1 : end;
  }
  return len;
}
