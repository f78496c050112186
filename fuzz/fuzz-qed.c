/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are a QED file.  Open it (no backing file),
 * map it, read from it and run the consistency check.  Any crash,
 * sanitizer report or hang is a bug: hostile images must only ever
 * produce errors.
 */

#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qed-check.h"
#include "qed-image.h"

/* The limits the replay script's FUZZ_PEAK_LIMIT is derived from. */
#define FUZZ_MAX_TABLE (8 << 10)
#define FUZZ_MAX_BITMAP (8 << 10)
#define FUZZ_L2_CACHE (16 << 10)

static void
quiet (const char *msg)
{
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qed_open_options opts = { .readonly = true, .no_backing = true,
                                   .l2_cache_bytes = FUZZ_L2_CACHE };
  struct qed_check_result res;
  struct qed_image *img;
  char path[64], buf[8192];
  uint64_t off, steps;
  int fd;

  /* Small limits, so that the peak-memory bound is tight. */
  qad_limits.max_table_bytes = FUZZ_MAX_TABLE;
  qad_limits.max_bitmap_bytes = FUZZ_MAX_BITMAP;
  qad_set_error_handler (quiet);
  fd = memfd_create ("fuzz.qed", 0);
  if (fd == -1 || full_pwrite (fd, data, size, 0) == -1)
    abort ();
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);

  img = qed_open (path, &opts);
  if (img) {
    /* Walk the map, a bounded number of steps. */
    for (off = 0, steps = 0; off < img->dev.size && steps < 4096; ++steps) {
      struct qed_mapping m;
      uint64_t len;
      uint32_t flags;
      if (qed_map (img, off, img->dev.size - off, &m) == -1)
        break;
      (void) qed_extent (img, off, m.length, &len, &flags);
      (void) qed_pread (img, buf,
                        m.length < sizeof buf ? m.length : sizeof buf, off);
      off += m.length;
    }
    (void) qed_check (img, false, &res, NULL, NULL);
    qed_close (img);
  }
  close (fd);
  return 0;
}
