/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A dirty-bitmap crash state: the disk is the raw file (nbdkit's file
 * plugin below the filter); the QDB file must parse, with all bits,
 * and bitmap "b1" must be a superset of what changed: every granule
 * whose bytes differ from the disk before the workload is dirty.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lsb-bits.h"
#include "pc-object.h"
#include "qdb.h"

static int
dirty_bitmap_state_read (struct pc_log *lg, const char *work,
                         uint8_t *disk, uint64_t size, const uint8_t *init,
                         char *msg, size_t len)
{
  const uint8_t *raw, *q;
  size_t rawlen, qlen;
  struct qdb_membuf mb;
  struct qdb_io io;
  struct qdb_file *qdb;
  struct qdb_bitmap *bm;
  uint64_t g;
  int r = -1;

  if (!pc_state_file (lg, "disk.raw", &raw, &rawlen) ||
      !pc_state_file (lg, "disk.qdb", &q, &qlen)) {
    snprintf (msg, len, "disk.raw or disk.qdb is missing");
    return -2;
  }
  if (rawlen != size) {
    snprintf (msg, len, "disk.raw has %zu bytes, expected %" PRIu64,
              rawlen, size);
    return -1;
  }
  memcpy (disk, raw, size);

  /* An empty QDB file is what the filter creates before it knows the
   * disk size; the next start fills it with clean bitmaps.  Valid only
   * while the disk has not changed.
   */
  if (qlen == 0) {
    if (init == NULL || memcmp (disk, init, size) == 0)
      return 0;
    snprintf (msg, len, "disk.qdb is empty (the next start makes clean "
              "bitmaps) but the disk changed");
    return -1;
  }

  /* The library only reads through IO here. */
  mb.data = (uint8_t *) q;
  mb.size = mb.alloc = qlen;
  qdb_io_init_mem (&io, &mb, "disk.qdb");
  qdb = qdb_read (&io, true);
  if (qdb == NULL) {
    snprintf (msg, len, "QDB does not parse: %s", pc_last_error ());
    return -1;
  }
  bm = qdb_find_bitmap (qdb, "b1");
  if (bm == NULL) {
    snprintf (msg, len, "QDB has no bitmap b1");
    goto out;
  }
  if (init == NULL) {           /* the state before the workload */
    r = 0;
    goto out;
  }
  for (g = 0; g < bm->nr_granules; ++g) {
    uint64_t off = g * bm->granularity, n;
    if (off >= size)
      break;
    n = size - off < bm->granularity ? size - off : bm->granularity;
    if (!bit_test (bm->bits, g) && memcmp (disk + off, init + off, n)) {
      snprintf (msg, len, "granule %" PRIu64 " (bytes %" PRIu64 "..%"
                PRIu64 ") changed but is clean in bitmap b1", g, off,
                off + n - 1);
      goto out;
    }
  }
  r = 0;
 out:
  qdb_free (qdb);
  return r;
}

const struct pc_object pc_object_dirty_bitmap = {
  .name = "dirty-bitmap",
  .read = dirty_bitmap_state_read,
};
