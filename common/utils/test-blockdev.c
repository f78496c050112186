/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the raw block device: size, reads (past the end they
 * are zeroes, also after the file shrinks), extents (holes of a sparse
 * file where the filesystem reports them; past the end HOLE|ZERO), and
 * an open error that names the file.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blockdev.h"
#include "full-io.h"
#include "qad-error.h"

static char last_error[1024];

static void
save_error (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

#define MIB (1024 * 1024)

int
main (void)
{
  char path[] = "/tmp/test-blockdev.XXXXXX";
  static char buf[2 * MIB];
  struct qad_blockdev *dev;
  uint64_t len, off;
  uint32_t flags;
  bool saw_hole = false, saw_data = false;
  int fd;
  size_t i;

  qad_set_error_handler (save_error);

  /* A 4 MiB file with data only in its second MiB. */
  fd = mkstemp (path);
  assert (fd >= 0);
  memset (buf, 'd', MIB);
  assert (full_pwrite (fd, buf, MIB, MIB) == 0);
  assert (ftruncate (fd, 4 * MIB) == 0);
  assert (close (fd) == 0);

  dev = qad_raw_open (path);
  assert (dev != NULL);
  assert (dev->size == 4 * MIB);
  assert (strcmp (dev->name, path) == 0);

  /* Reads inside, across the end and wholly past it. */
  assert (qad_blockdev_pread (dev, buf, 4096, MIB - 2048) == 0);
  for (i = 0; i < 2048; ++i)
    assert (buf[i] == 0 && buf[2048 + i] == 'd');
  memset (buf, 'x', 8192);
  assert (qad_blockdev_pread (dev, buf, 8192, 4 * MIB - 4096) == 0);
  for (i = 0; i < 8192; ++i)
    assert (buf[i] == 0);
  memset (buf, 'x', 8192);
  assert (qad_blockdev_pread (dev, buf, 8192, UINT64_MAX - 8192) == 0);
  for (i = 0; i < 8192; ++i)
    assert (buf[i] == 0);

  /* Extents cover the file exactly, in order, each inside MAX; the
   * data MiB is never reported as a hole.
   */
  for (off = 0; off < dev->size; off += len) {
    assert (qad_blockdev_extent (dev, off, dev->size - off, &len,
                                 &flags) == 0);
    assert (len >= 1 && len <= dev->size - off);
    assert (flags == 0 || flags == (QAD_EXTENT_HOLE | QAD_EXTENT_ZERO));
    if (flags)
      saw_hole = true;
    else
      saw_data = true;
    if (flags)
      assert (off + len <= MIB || off >= 2 * MIB);
  }
  assert (off == dev->size);
  assert (saw_data);
  if (!saw_hole)
    fprintf (stderr, "note: this filesystem reports no holes\n");
  /* MAX is respected. */
  assert (qad_blockdev_extent (dev, MIB, 512, &len, &flags) == 0);
  assert (len == 512 && flags == 0);
  /* Past the end: a hole of MAX bytes. */
  assert (qad_blockdev_extent (dev, 4 * MIB, 12345, &len, &flags) == 0);
  assert (len == 12345 && flags == (QAD_EXTENT_HOLE | QAD_EXTENT_ZERO));

  /* The file shrinks under us: reads return zeroes, not an error. */
  assert (truncate (path, MIB + 100) == 0);
  memset (buf, 'x', 4096);
  assert (qad_blockdev_pread (dev, buf, 4096, MIB) == 0);
  for (i = 0; i < 100; ++i)
    assert (buf[i] == 'd');
  for (i = 100; i < 4096; ++i)
    assert (buf[i] == 0);

  qad_blockdev_close (dev);
  qad_blockdev_close (NULL);

  /* A missing file: NULL, and the message names it. */
  assert (unlink (path) == 0);
  last_error[0] = '\0';
  assert (qad_raw_open (path) == NULL);
  assert (strstr (last_error, path) != NULL);
  assert (strstr (last_error, "No such file") != NULL);

  return EXIT_SUCCESS;
}
