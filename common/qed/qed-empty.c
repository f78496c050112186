/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * Emptying an image after a commit: every L1 entry becomes 0, so every
 * guest cluster falls through to the backing file again, then the file
 * is cut back to the header and the L1 table.
 *
 * Crash safety rests on the caller's promise that every allocated
 * cluster already reads the same from the backing file (data written
 * there and synced).  The zeroed L1 table is written in one call; a
 * crash may leave any mix of old and zero entries (sector by sector),
 * and each of them reads the same bytes.  Only after the table is
 * synced is the file truncated: until then the old L2 tables and data
 * clusters are merely leaked, which the consistency check reports as
 * harmless and repairs.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qed-resize.h"

int
qed_make_empty (struct qed_image *img)
{
  const char *name = img->dev.name;
  uint64_t l1_end = img->header.l1_table_offset + img->geom.table_bytes;
  uint64_t new_end = l1_end > img->geom.header_bytes
    ? l1_end : img->geom.header_bytes;
  void *zeroes;
  uint64_t i;

  if (qed_offline_writable (img, "emptying") == -1)
    return -1;

  zeroes = calloc (1, img->geom.table_bytes);
  if (zeroes == NULL) {
    qad_error ("%s: %m", name);
    return -1;
  }
  if (full_pwrite (img->fd, zeroes, img->geom.table_bytes,
                   img->header.l1_table_offset) == -1 ||
      fdatasync (img->fd) == -1) {
    qad_error ("%s: writing the emptied L1 table: %m", name);
    free (zeroes);
    return -1;
  }
  free (zeroes);

  pthread_mutex_lock (&img->lock);
  for (i = 0; i < img->geom.table_entries; ++i)
    img->l1[i] = 0;
  qed_l2cache_clear (img->l2cache);
  pthread_mutex_unlock (&img->lock);

  if (img->file_end > new_end) {
    if (ftruncate (img->fd, new_end) == -1 || fdatasync (img->fd) == -1) {
      qad_error ("%s: cutting the emptied image back to %" PRIu64
                 " bytes: %m (only leaked clusters remain)", name, new_end);
      return -1;
    }
    img->file_end = new_end;
  }
  return 0;
}
