/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A dirty-bitmap crash state: the disk is the raw file (nbdkit's file
 * plugin below the filter); the QDB file must parse, with all bits,
 * and the bitmaps must be a superset of what changed: every granule
 * whose bytes differ from the disk before the workload is dirty.
 *
 * The bitmaps: "b1", tracking from the start, and, in the runs where
 * the workload sends "--add b2 --freeze b1" halfway (powercut.sh,
 * PC_COMMAND), "b2".  That command is atomic with respect to writes
 * and durable before it returns, so a state holds either b1 enabled
 * and no b2, or b1 disabled (the freeze itself is not kept: its
 * scratch file is unlinked from the start) and b2 enabled; every
 * granule that changed is dirty in b1 or in b2.
 *
 * Lazy tracking: qdb_read ORs the region map of an unclean shutdown
 * into the bitmaps (the superset is checked after that).  The states
 * where the region map added granules are counted as "repaired on
 * open", to show that the runs exercise it.
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lsb-bits.h"
#include "pc-object.h"
#include "qdb.h"

static uint64_t region_recovered;

/* Is any granule of BM over [off, off+n) dirty? */
static bool
dirty_in (const struct qdb_bitmap *bm, uint64_t off, uint64_t n)
{
  uint64_t g;

  for (g = off / bm->granularity;
       g < bm->nr_granules && g * bm->granularity < off + n; ++g)
    if (bit_test (bm->bits, g))
      return true;
  return false;
}

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
  struct qdb_bitmap *bm, *bm2;
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
  bm2 = qdb_find_bitmap (qdb, "b2");
  if (bm == NULL) {
    snprintf (msg, len, "QDB has no bitmap b1");
    goto out;
  }
  if ((bm2 != NULL) != !(bm->flags & QDB_FLAG_ENABLED) ||
      (bm2 && !(bm2->flags & QDB_FLAG_ENABLED))) {
    snprintf (msg, len, "b1 is %s but b2 is %s: half of the command "
              "\"--add b2 --freeze b1\"",
              bm->flags & QDB_FLAG_ENABLED ? "enabled" : "disabled",
              !bm2 ? "missing" : bm2->flags & QDB_FLAG_ENABLED ? "enabled"
              : "disabled");
    goto out;
  }
  if (qdb->region_recovered)
    region_recovered++;
  if (init == NULL) {           /* the state before the workload */
    r = 0;
    goto out;
  }
  for (g = 0; g < bm->nr_granules; ++g) {
    uint64_t off = g * bm->granularity, n;
    if (off >= size)
      break;
    n = size - off < bm->granularity ? size - off : bm->granularity;
    if (!bit_test (bm->bits, g) && !(bm2 && dirty_in (bm2, off, n)) &&
        memcmp (disk + off, init + off, n)) {
      snprintf (msg, len, "granule %" PRIu64 " (bytes %" PRIu64 "..%"
                PRIu64 ") changed but is clean in bitmap b1%s", g, off,
                off + n - 1, bm2 ? " and in b2" : "");
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
  .repairs = &region_recovered,
};
