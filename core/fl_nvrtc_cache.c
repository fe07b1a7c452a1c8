/* The compiled-image cache: a list in memory for the process's lifetime, and
 * one file an entry on disk. A file holds a header, the key text, the image
 * and the log, with a checksum; files are written whole under a temporary
 * name and renamed into place, so that a reader never sees half of one.
 * Anything wrong with a file (short, corrupt, another key) reads as a miss. */
#include "fl_nvrtc_cache.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FL_PATH_MAX 4096

/* FNV-1a, then a final mix so that every bit of the file name depends on
 * every byte. */
static uint64_t hash_more(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static uint64_t hash_done(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

#define HASH_SEED 0xcbf29ce484222325ULL

typedef struct entry {
  struct entry *next;
  char *key;
  size_t keylen;
  fl_image_kind kind;
  void *data;
  size_t size;
  char *log;
} entry;

static entry *memory;

static void *copy_bytes(const void *p, size_t n, size_t extra) {
  char *c = malloc(n + extra);
  if (c) {
    memcpy(c, p, n);
    memset(c + n, 0, extra);
  }
  return c;
}

/* Gives out copies of an entry's image and log; 0 when memory runs out. */
static int copy_out(fl_image_kind kind, const void *data, size_t size, const char *log,
                    size_t loglen, fl_module_image *out) {
  void *d = copy_bytes(data, size, 0);
  char *l = copy_bytes(log, loglen, 1);
  if (!d || !l) {
    free(d);
    free(l);
    return 0;
  }
  out->kind = kind;
  out->data = d;
  out->size = size;
  out->log = l;
  return 1;
}

static entry *memory_find(const char *key, size_t keylen) {
  for (entry *x = memory; x; x = x->next)
    if (x->keylen == keylen && memcmp(x->key, key, keylen) == 0) return x;
  return NULL;
}

static void memory_put(const char *key, size_t keylen, fl_image_kind kind, const void *data,
                       size_t size, const char *log) {
  if (memory_find(key, keylen)) return;
  entry *x = calloc(1, sizeof *x);
  if (!x) return;
  x->key = copy_bytes(key, keylen, 0);
  x->data = copy_bytes(data, size, 0);
  x->log = copy_bytes(log, strlen(log), 1);
  if (!x->key || !x->data || !x->log) {
    free(x->key);
    free(x->data);
    free(x->log);
    free(x);
    return;
  }
  x->keylen = keylen;
  x->kind = kind;
  x->size = size;
  x->next = memory;
  memory = x;
}

void fl_nvrtc_cache_clear(void) {
  while (memory) {
    entry *x = memory;
    memory = x->next;
    free(x->key);
    free(x->data);
    free(x->log);
    free(x);
  }
}

int fl_nvrtc_cache_dir(char *buf, size_t n) {
  const char *mine = getenv("FLASHLIGHT_CACHE"), *xdg = getenv("XDG_CACHE_HOME");
  const char *home = getenv("HOME");
  int w;
  if (mine && *mine) {
    if (strcmp(mine, "off") == 0) return 0;
    w = snprintf(buf, n, "%s/jit", mine);
  } else if (xdg && xdg[0] == '/') {
    w = snprintf(buf, n, "%s/flashlight/jit", xdg);
  } else if (home && *home) {
    w = snprintf(buf, n, "%s/.cache/flashlight/jit", home);
  } else {
    return 0;
  }
  return w > 0 && (size_t)w < n;
}

/* The file for a key: <dir>/<hash>.fljit. 0 when there is no cache dir. */
static int file_path(const char *key, size_t keylen, char *buf, size_t n, size_t *dirlen) {
  char dir[FL_PATH_MAX];
  if (!fl_nvrtc_cache_dir(dir, sizeof dir)) return 0;
  unsigned long long h = hash_done(hash_more(HASH_SEED, key, keylen));
  int w = snprintf(buf, n, "%s/%016llx.fljit", dir, h);
  *dirlen = strlen(dir);
  return w > 0 && (size_t)w < n;
}

typedef struct file_header {
  char magic[8];
  uint64_t keylen, size, loglen, checksum;
  uint32_t kind, reserved;
} file_header;

static const char file_magic[8] = "FLJIT\001\n";

static uint64_t checksum(const void *key, size_t keylen, const void *data, size_t size,
                         const void *log, size_t loglen) {
  uint64_t h = hash_more(HASH_SEED, key, keylen);
  h = hash_more(h, data, size);
  return hash_done(hash_more(h, log, loglen));
}

/* The whole file at path, or NULL. */
static char *read_file(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return NULL;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size < (1L << 30) &&
      (buf = malloc((size_t)st.st_size))) {
    size_t got = 0;
    ssize_t r;
    while (got < (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
      got += (size_t)r;
    if (got != (size_t)st.st_size) {
      free(buf);
      buf = NULL;
    }
    *n = got;
  }
  close(fd);
  return buf;
}

/* Copies out the entry in a file's bytes when they hold `key`, whole. */
static int read_entry(const char *buf, size_t n, const char *key, size_t keylen,
                      fl_module_image *out) {
  file_header h;
  if (n < sizeof h) return 0;
  memcpy(&h, buf, sizeof h);
  if (memcmp(h.magic, file_magic, sizeof h.magic) != 0 || h.keylen != keylen ||
      h.kind > FL_IMAGE_PTX || h.size == 0 || h.size > n || h.loglen > n ||
      sizeof h + h.keylen + h.size + h.loglen != n)
    return 0;
  const char *k = buf + sizeof h, *data = k + keylen, *log = data + h.size;
  return memcmp(k, key, keylen) == 0 &&
         h.checksum == checksum(k, keylen, data, h.size, log, h.loglen) &&
         (h.kind != FL_IMAGE_PTX || data[h.size - 1] == '\0') &&
         copy_out((fl_image_kind)h.kind, data, h.size, log, h.loglen, out);
}

static int disk_get(const char *key, size_t keylen, fl_module_image *out) {
  char path[FL_PATH_MAX];
  size_t dirlen, n = 0;
  if (!file_path(key, keylen, path, sizeof path, &dirlen)) return 0;
  char *buf = read_file(path, &n);
  int ok = buf && read_entry(buf, n, key, keylen, out);
  free(buf);
  return ok;
}

/* mkdir -p; 1 when path is a directory afterwards. */
static int make_dirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0777);
    *p = '/';
  }
  mkdir(path, 0777);
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w <= 0) return 0;
    c += w;
    n -= (size_t)w;
  }
  return 1;
}

static void disk_put(const char *key, size_t keylen, const fl_module_image *img) {
  static unsigned serial;
  char path[FL_PATH_MAX], tmp[FL_PATH_MAX + 64];
  size_t dirlen;
  if (!file_path(key, keylen, path, sizeof path, &dirlen)) return;
  path[dirlen] = '\0';
  int have_dir = make_dirs(path);
  path[dirlen] = '/';
  if (!have_dir) return;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), serial++);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) return;
  size_t loglen = strlen(img->log);
  file_header h = {.keylen = keylen, .size = img->size, .loglen = loglen,
                   .kind = (uint32_t)img->kind};
  memcpy(h.magic, file_magic, sizeof h.magic);
  h.checksum = checksum(key, keylen, img->data, img->size, img->log, loglen);
  int ok = write_all(fd, &h, sizeof h) && write_all(fd, key, keylen) &&
           write_all(fd, img->data, img->size) && write_all(fd, img->log, loglen);
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

fl_cache_hit fl_nvrtc_cache_get(const char *key, size_t keylen, fl_module_image *out) {
  entry *x = memory_find(key, keylen);
  if (x) return copy_out(x->kind, x->data, x->size, x->log, strlen(x->log), out)
                    ? FL_CACHE_MEMORY : FL_CACHE_MISS;
  if (!disk_get(key, keylen, out)) return FL_CACHE_MISS;
  memory_put(key, keylen, out->kind, out->data, out->size, out->log);
  return FL_CACHE_DISK;
}

void fl_nvrtc_cache_put(const char *key, size_t keylen, const fl_module_image *img) {
  memory_put(key, keylen, img->kind, img->data, img->size, img->log);
  disk_put(key, keylen, img);
}
