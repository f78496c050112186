/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* I/O in bounded pieces: see pieces.h. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "minmax.h"
#include "pieces.h"
#include "qad-error.h"

int
qad_read_pieces (const char *name, void *buf, uint64_t count,
                 uint64_t offset, uint64_t max, qad_read_fn read_piece,
                 void *opaque)
{
  char *p = buf;

  while (count > 0) {
    uint64_t n = MIN (count, max - (offset & (max - 1)));

    if (read_piece (opaque, p, n, offset) == -1) {
      qad_error ("%s: read failed: offset=%" PRIu64 " count=%" PRIu64
                 ": %m", name, offset, n);
      return -1;
    }
    p += n;
    offset += n;
    count -= n;
  }
  return 0;
}

int
qad_write_zeroes (const char *name, uint64_t count, uint64_t offset,
                  qad_write_fn write_piece, void *opaque)
{
  char *zeroes;

  if (count == 0)
    return 0;
  zeroes = calloc (1, MIN (count, QAD_ZEROES_PIECE));
  if (zeroes == NULL) {
    qad_error ("%s: cannot allocate a buffer of zeroes: %m", name);
    return -1;
  }
  while (count > 0) {
    uint64_t n = MIN (count, QAD_ZEROES_PIECE);

    if (write_piece (opaque, zeroes, n, offset) == -1) {
      int saved = errno;

      free (zeroes);
      errno = saved;
      return -1;
    }
    offset += n;
    count -= n;
  }
  free (zeroes);
  return 0;
}
