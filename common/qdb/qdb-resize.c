/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * Only the public model API is used: a bitmap of the new size is
 * made with qdb_add_bitmap under a temporary name (which computes its
 * geometry and allocates its table and bits the one way the library
 * knows), the kept bits are copied into it, and then its table and
 * bits are swapped into the original bitmap, which keeps its name,
 * flags, granularity, extra data and place in the directory.  The
 * temporary bitmap, now holding the old arrays, is removed.
 *
 * Crash safety is the caller's: the model is written to a new file
 * that is renamed over the old one, as every offline QDB change is.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-resize.h"

uint64_t
qdb_first_dirty_from (const struct qdb_bitmap *bm, uint64_t offset)
{
  uint64_t n = offset / bm->granularity + (offset % bm->granularity != 0);

  if (n >= bm->nr_granules)
    return UINT64_MAX;
  if (!bit_test (bm->bits, n))
    n += bits_run (bm->bits, n, bm->nr_granules, NULL);
  return n < bm->nr_granules ? n * bm->granularity : UINT64_MAX;
}

/* Copy the first N bits of SRC into DST (whose other bits are 0). */
static void
copy_bits (uint8_t *dst, const uint8_t *src, uint64_t n)
{
  uint64_t i;

  memcpy (dst, src, n / 8);
  for (i = n & ~UINT64_C (7); i < n; ++i)
    if (bit_test (src, i))
      bit_set (dst, i);
}

/* The bitmap's arrays are rebuilt in a scratch file with the same
 * cluster size (a file holds one disk size only, so the new geometry
 * cannot be added beside the old one), then swapped in.
 */
static int
resize_one (struct qdb_file *qdb, size_t i, uint64_t new_size)
{
  struct qdb_file *scratch;
  struct qdb_bitmap *bm, *nb, saved;

  scratch = qdb_new (qdb->name, qdb->cluster_bits);
  if (scratch == NULL)
    return -1;
  if (qdb_add_bitmap (scratch, "resize", qdb->bitmaps[i].granularity,
                      new_size, 0) == -1) {
    qdb_free (scratch);
    return -1;
  }
  bm = &qdb->bitmaps[i];
  nb = &scratch->bitmaps[0];
  copy_bits (nb->bits, bm->bits, bm->nr_granules < nb->nr_granules
             ? bm->nr_granules : nb->nr_granules);

  /* Only the geometry and the arrays move; whatever else a bitmap
   * records stays with the original.
   */
#define SWAP(field) \
  do { saved.field = bm->field; bm->field = nb->field; \
       nb->field = saved.field; } while (0)
  SWAP (disk_size);
  SWAP (nr_granules);
  SWAP (table_size);
  SWAP (table);
  SWAP (table_offset);
  SWAP (bits);
  SWAP (bits_len);
#undef SWAP
  qdb_free (scratch);
  return 0;
}

int
qdb_resize (struct qdb_file *qdb, uint64_t new_size, bool shrink)
{
  size_t i;

  if (new_size == 0 || new_size > QDB_MAX_DISK_SIZE) {
    qad_error ("%s: new size %" PRIu64 " must be between 1 and %" PRIu64,
               qdb->name, new_size, (uint64_t) QDB_MAX_DISK_SIZE);
    errno = EINVAL;
    return -1;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    uint64_t first;

    if (new_size >= bm->disk_size)
      continue;
    if (!shrink) {
      qad_error ("%s: new size %" PRIu64 " is smaller than the %" PRIu64
                 " bytes bitmap \"%s\" covers: shrinking needs --shrink",
                 qdb->name, new_size, bm->disk_size, bm->name);
      errno = EINVAL;
      return -1;
    }
    first = qdb_first_dirty_from (bm, new_size);
    if (first != UINT64_MAX) {
      qad_error ("%s: cannot shrink to %" PRIu64 " bytes: bitmap \"%s\" "
                 "has a dirty granule at offset %" PRIu64 " (0x%" PRIx64
                 ") past the new end", qdb->name, new_size, bm->name,
                 first, first);
      errno = ENOTEMPTY;
      return -1;
    }
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].disk_size != new_size &&
        resize_one (qdb, i, new_size) == -1)
      return -1;
  return 0;
}
