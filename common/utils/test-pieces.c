/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of pieces.h: a read arrives whole, in pieces of at most
 * the bound that never cross a multiple of it, and a failed piece is
 * reported once with the device, offset and count, keeping errno; the
 * zero writer zeroes exactly its range in pieces of at most 1 MiB and
 * stops at the first failed piece with its errno.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pieces.h"
#include "qad-error.h"

static char last_error[1024];
static int nr_errors;

static void
save_error (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
  nr_errors++;
}

#define DEV_SIZE (4 * 1024 * 1024)

/* A device in memory that checks every piece against its bound. */
struct fake {
  uint8_t *data;
  uint64_t max;                 /* the bound pieces must keep */
  uint64_t fail_at;             /* fail the piece holding this offset */
  int fail_errno;
  unsigned pieces;
};

/* Check a piece against the bound and count it; -1 (with errno) when
 * it holds fail_at.
 */
static int
piece (struct fake *f, uint64_t count, uint64_t offset)
{
  assert (count > 0 && count <= f->max);
  assert (offset + count <= DEV_SIZE);
  f->pieces++;
  if (f->fail_at >= offset && f->fail_at < offset + count) {
    errno = f->fail_errno;
    return -1;
  }
  return 0;
}

static int
fake_read (void *f, void *buf, uint64_t count, uint64_t offset)
{
  const uint64_t max = ((struct fake *) f)->max;

  /* Never across a multiple of the bound. */
  assert (count == 0 || offset / max == (offset + count - 1) / max);
  if (piece (f, count, offset) == -1)
    return -1;
  memcpy (buf, ((struct fake *) f)->data + offset, count);
  return 0;
}

static int
fake_write (void *f, const void *buf, uint64_t count, uint64_t offset)
{
  if (piece (f, count, offset) == -1)
    return -1;
  memcpy (((struct fake *) f)->data + offset, buf, count);
  return 0;
}

int
main (void)
{
  struct fake f = { .fail_at = UINT64_MAX };
  uint8_t *buf;
  uint64_t i;

  qad_set_error_handler (save_error);
  f.data = malloc (DEV_SIZE);
  buf = malloc (DEV_SIZE);
  assert (f.data && buf);
  for (i = 0; i < DEV_SIZE; ++i)
    f.data[i] = i * 7 + (i >> 12);

  /* A read from an odd offset: whole, split at multiples of 4096. */
  f.max = 4096;
  memset (buf, 0, DEV_SIZE);
  assert (qad_read_pieces ("dev", buf, 10000, 1000, f.max, fake_read,
                           &f) == 0);
  assert (memcmp (buf, f.data + 1000, 10000) == 0);
  assert (f.pieces == 3);       /* 1000..4096..8192..11000 */
  assert (nr_errors == 0);

  /* Aligned and longer than the bound; a count of 0 reads nothing. */
  f.pieces = 0;
  assert (qad_read_pieces ("dev", buf, DEV_SIZE, 0, f.max, fake_read,
                           &f) == 0);
  assert (memcmp (buf, f.data, DEV_SIZE) == 0 && f.pieces == 1024);
  f.pieces = 0;
  assert (qad_read_pieces ("dev", buf, 0, 5, f.max, fake_read, &f) == 0);
  assert (f.pieces == 0);

  /* A failed piece: one message naming device, offset and count. */
  f.fail_at = 9000;
  f.fail_errno = EIO;
  errno = 0;
  assert (qad_read_pieces ("some.img", buf, 20000, 100, f.max, fake_read,
                           &f) == -1);
  assert (errno == EIO && nr_errors == 1);
  assert (strncmp (last_error,
                   "some.img: read failed: offset=8192 count=4096: ",
                   47) == 0);

  /* Zeroes: exactly [7, 7 + 3 MiB + 5), in pieces of at most 1 MiB. */
  memset (f.data, 0xff, DEV_SIZE);
  f.max = QAD_ZEROES_PIECE;
  f.fail_at = UINT64_MAX;
  f.pieces = 0;
  assert (qad_write_zeroes ("dev", 3 * QAD_ZEROES_PIECE + 5, 7, fake_write,
                            &f) == 0);
  assert (f.pieces == 4);
  assert (f.data[6] == 0xff && f.data[7 + 3 * QAD_ZEROES_PIECE + 5] == 0xff);
  for (i = 7; i < 7 + 3 * QAD_ZEROES_PIECE + 5; ++i)
    assert (f.data[i] == 0);
  f.pieces = 0;
  assert (qad_write_zeroes ("dev", 0, 0, fake_write, &f) == 0 && f.pieces == 0);

  /* A failed piece stops the writing with its errno, reporting nothing. */
  memset (f.data, 0xff, DEV_SIZE);
  f.fail_at = QAD_ZEROES_PIECE + 1;
  f.fail_errno = ENOSPC;
  errno = 0;
  assert (qad_write_zeroes ("dev", 3 * QAD_ZEROES_PIECE, 0, fake_write,
                            &f) == -1);
  assert (errno == ENOSPC && nr_errors == 1);
  assert (f.data[0] == 0 && f.data[QAD_ZEROES_PIECE] == 0xff);
  assert (f.data[2 * QAD_ZEROES_PIECE] == 0xff);

  free (f.data);
  free (buf);
  printf ("test-pieces: all passed\n");
  return 0;
}
