/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are an add-cow sidecar.  Parse the header
 * from memory; when it parses, serialize it again and check that the
 * result parses to the same values; then read it as a file, load the
 * bitmap for a few disk sizes, scan runs, and run the consistency
 * check.  Any crash, sanitizer report or hang is a bug.
 */

#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-check.h"
#include "addcow-file.h"
#include "full-io.h"
#include "qad-error.h"
#include "qad-limits.h"

/* The limit the replay script's FUZZ_PEAK_LIMIT is derived from. */
#define FUZZ_MAX_BITMAP (64 << 10)

static void
quiet (const char *msg)
{
}

static void
quiet_problem (void *opaque, const char *msg)
{
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const uint64_t disk_sizes[] = {
    0, 1, 4096, 65536 * 3 + 7, 1 << 20, UINT64_C (1) << 36,
  };
  struct addcow_header h, h2;
  char path[64];
  uint64_t fsz;
  size_t i;
  int fd;

  /* A small limit, so that the peak-memory bound is tight. */
  qad_limits.max_bitmap_bytes = FUZZ_MAX_BITMAP;
  qad_set_error_handler (quiet);

  if (addcow_parse_header (data, size, "fuzz", &h) == 0) {
    uint8_t *buf = malloc (h.header_size);
    if (buf == NULL)
      abort ();
    if (addcow_build_header (&h, buf, "fuzz") != 0 ||
        addcow_parse_header (buf, h.header_size, "fuzz", &h2) != 0)
      abort ();
    if (h.cluster_bits != h2.cluster_bits ||
        h.compat_features != h2.compat_features ||
        strcmp (h.image_file, h2.image_file) != 0 ||
        (h.backing_file == NULL) != (h2.backing_file == NULL) ||
        (h.backing_file && strcmp (h.backing_file, h2.backing_file) != 0) ||
        strcmp (h.image_format, h2.image_format) != 0 ||
        strcmp (h.backing_format, h2.backing_format) != 0)
      abort ();
    addcow_header_free (&h2);
    addcow_header_free (&h);
    free (buf);
  }

  fd = memfd_create ("fuzz.add-cow", 0);
  if (fd == -1 || full_pwrite (fd, data, size, 0) == -1)
    abort ();
  snprintf (path, sizeof path, "/proc/self/fd/%d", fd);
  if (addcow_read_header (fd, path, &h, &fsz) == 0) {
    for (i = 0; i < sizeof disk_sizes / sizeof disk_sizes[0]; ++i) {
      uint8_t *bm;
      uint64_t bmlen, n, c;
      bool fresh, v;
      if (addcow_bitmap_size (disk_sizes[i], h.cluster_bits) > (1 << 24))
        continue;
      if (addcow_load_bitmap (fd, path, &h, fsz, disk_sizes[i], &bm, &bmlen,
                              &fresh) == -1)
        continue;
      n = addcow_nr_clusters (disk_sizes[i], h.cluster_bits);
      for (c = 0; c < n; c += bits_run (bm, c, n, &v))
        ;
      (void) bits_count (bm, 0, n);
      free (bm);
    }
    addcow_header_free (&h);
    {
      struct addcow_check_result r;
      (void) addcow_check (path, false, quiet_problem, NULL, &r);
    }
  }
  close (fd);
  return 0;
}
