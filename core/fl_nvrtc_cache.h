/* The compiled-image cache behind fl_nvrtc_compile. An entry is found by its
 * key text (everything the image depends on), hashed for a file name and
 * compared in full, so that a hash collision is a miss, never a wrong image. */
#ifndef FL_NVRTC_CACHE_H
#define FL_NVRTC_CACHE_H

#include <stddef.h>

#include "fl_nvrtc.h"

/* Fills out->kind, data, size and log from memory, else from disk (keeping
 * it in memory then); returns where it was found, or FL_CACHE_MISS. */
fl_cache_hit fl_nvrtc_cache_get(const char *key, size_t keylen, fl_module_image *out);
/* Keeps img in memory and writes it to disk; failures are silent. */
void fl_nvrtc_cache_put(const char *key, size_t keylen, const fl_module_image *img);

#endif
