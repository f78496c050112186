/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of qdb_resize: every bitmap follows the new size, keeps
 * its name, flags, place and the bits both sizes cover; new granules
 * are clean; a shrink needs the flag and stops at a dirty granule; the
 * result writes and reads back.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-resize.h"
#include "qdb.h"

#define MiB (UINT64_C (1) << 20)

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static struct qdb_file *
round_trip (struct qdb_file *qdb)
{
  struct qdb_membuf mb = { 0 };
  struct qdb_io io;
  struct qdb_file *back;

  qdb_io_init_mem (&io, &mb, "r.qdb");
  assert (qdb_write (&io, qdb, false) == 0);
  back = qdb_read (&io, true);
  assert (back != NULL);
  free (mb.data);
  qdb_free (qdb);
  return back;
}

int
main (void)
{
  struct qdb_file *qdb = qdb_new ("r.qdb", 9);
  struct qdb_bitmap *a, *b;

  qad_set_error_handler (capture);
  assert (qdb);
  assert (qdb_add_bitmap (qdb, "a", 512, 3 * MiB, QDB_FLAG_ENABLED) == 0);
  assert (qdb_add_bitmap (qdb, "b", 65536, 3 * MiB, 0) == 1);
  bits_set_range (qdb->bitmaps[0].bits, 3, 701);   /* .. 358912 */
  bit_set (qdb->bitmaps[1].bits, 40);                  /* 2621440 */

  /* Grow: bits kept, new granules clean, names and flags kept. */
  assert (qdb_resize (qdb, 100 * MiB + 512, false) == 0);
  qdb = round_trip (qdb);
  assert (qdb->nr_bitmaps == 2);
  a = &qdb->bitmaps[0];
  b = &qdb->bitmaps[1];
  assert (strcmp (a->name, "a") == 0 && a->flags == QDB_FLAG_ENABLED);
  assert (strcmp (b->name, "b") == 0 && b->flags == 0);
  assert (a->disk_size == 100 * MiB + 512 && b->disk_size == a->disk_size);
  assert (qdb_dirty_granules (a) == 698 && qdb_dirty_granules (b) == 1);
  assert (bit_test (a->bits, 3) && bit_test (a->bits, 700));
  assert (!bit_test (a->bits, 701) && !bit_test (a->bits, 2));
  assert (bit_test (b->bits, 40));
  assert (qdb_first_dirty_from (b, 0) == 40 * 65536);
  assert (qdb_first_dirty_from (b, 40 * 65536 + 1) == UINT64_MAX);

  /* Shrink: needs the flag, stops at the first dirty granule. */
  assert (qdb_resize (qdb, MiB, false) == -1 && errno == EINVAL);
  assert (qdb_resize (qdb, MiB, true) == -1 && errno == ENOTEMPTY);
  assert (strstr (last_error, "\"b\"") && strstr (last_error, "2621440"));
  assert (qdb_resize (qdb, 40 * 65536, true) == -1);
  assert (qdb->bitmaps[0].disk_size == 100 * MiB + 512);   /* unchanged */
  assert (qdb_resize (qdb, 41 * 65536, true) == 0);
  qdb = round_trip (qdb);
  a = &qdb->bitmaps[0];
  b = &qdb->bitmaps[1];
  assert (a->disk_size == 41 * 65536 && a->nr_granules == 41 * 128);
  assert (b->nr_granules == 41);
  assert (qdb_dirty_granules (a) == 698 && qdb_dirty_granules (b) == 1);

  /* Shrinking through clean granules drops them. */
  bit_clear (b->bits, 40);
  assert (qdb_resize (qdb, 700 * 512, true) == -1);
  assert (qdb_resize (qdb, 700 * 512 + 1, true) == 0);  /* 700 straddles */
  qdb = round_trip (qdb);
  assert (qdb->bitmaps[0].nr_granules == 701);
  assert (qdb_dirty_granules (&qdb->bitmaps[0]) == 698);
  assert (qdb_resize (qdb, 0, true) == -1);
  qdb_free (qdb);
  printf ("test-qdb-resize: ok\n");
  return 0;
}
