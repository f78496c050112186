/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the frozen view (qdb-freeze.h) over a disk in memory:
 * a granule is copied once, before its first change; the view reads
 * the disk as of the freeze; and what the view's extents rely on:
 * which granules are copied, and whether a copy is all zero.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qdb-freeze.h"

#define G 4096
#define SIZE (8 * G + 100)      /* a short last granule */

static uint8_t disk[SIZE];
static unsigned reads;

static int
read_disk (void *opaque, void *buf, uint32_t count, uint64_t offset,
           int *err)
{
  assert (offset + count <= SIZE);
  memcpy (buf, disk + offset, count);
  reads++;
  return 0;
}

int
main (void)
{
  char dir[] = "/tmp/test-qdb-freeze.XXXXXX";
  uint8_t buf[SIZE];
  struct qdb_freeze *fz;
  int err = 0;

  assert (mkdtemp (dir) != NULL);
  memset (disk + 2 * G, 'b', G);           /* granule 2: data */
  memset (disk + 8 * G, 'e', 100);         /* the short last granule */
  fz = qdb_freeze_new (dir, "/nonexistent/t.qdb", "b1", G, SIZE);
  assert (fz != NULL);
  /* The scratch file is unlinked from the start. */
  assert (rmdir (dir) == 0);

  /* Granules 1..3 are about to change: copied once each. */
  assert (qdb_freeze_before_write (fz, G + 10, 2 * G, read_disk, NULL,
                                   &err) == 0);
  assert (reads == 3);
  assert (qdb_freeze_before_write (fz, 2 * G, 1, read_disk, NULL, &err) == 0);
  assert (reads == 3);
  assert (qdb_freeze_copied_bytes (fz) == 3 * G);
  assert (qdb_freeze_before_write (fz, 8 * G + 50, 1, read_disk, NULL,
                                   &err) == 0);
  assert (qdb_freeze_copied_bytes (fz) == 3 * G + 100);
  memset (disk, 'x', SIZE);                /* every byte changes */

  assert (!qdb_freeze_is_copied (fz, 0));
  assert (qdb_freeze_is_copied (fz, G));
  assert (qdb_freeze_is_copied (fz, 4 * G - 1));
  assert (!qdb_freeze_is_copied (fz, 4 * G));
  assert (qdb_freeze_is_copied (fz, SIZE - 1));
  assert (!qdb_freeze_is_copied (fz, SIZE + G));   /* past the end */

  /* Copies: granules 1 and 3 were zero, 2 was not; part of 2 too. */
  assert (qdb_freeze_copy_is_zero (fz, G, G, &err) == 1);
  assert (qdb_freeze_copy_is_zero (fz, 3 * G, G, &err) == 1);
  assert (qdb_freeze_copy_is_zero (fz, G, 2 * G, &err) == 0);
  assert (qdb_freeze_copy_is_zero (fz, 2 * G + G - 1, 1, &err) == 0);
  assert (qdb_freeze_copy_is_zero (fz, 8 * G, 100, &err) == 0);
  assert (qdb_freeze_copy_is_zero (fz, G, 0, &err) == 1);

  /* The view: copied granules as of the freeze, the rest from today's
   * disk (unchanged since the freeze, as far as the view knows).
   */
  qdb_freeze_hold (fz);
  assert (qdb_freeze_read (fz, buf, SIZE, 0, read_disk, NULL, &err) == 0);
  qdb_freeze_unhold (fz);
  assert (buf[0] == 'x' && buf[G - 1] == 'x');
  assert (buf[G] == 0 && buf[2 * G - 1] == 0);
  assert (buf[2 * G] == 'b' && buf[3 * G - 1] == 'b');
  assert (buf[3 * G] == 0 && buf[4 * G - 1] == 0);
  assert (buf[4 * G] == 'x');
  assert (buf[8 * G] == 'e' && buf[SIZE - 1] == 'e');

  qdb_freeze_free (fz);
  return 0;
}
