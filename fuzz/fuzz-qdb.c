/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are a QDB file.  Read and validate it from
 * memory (with the bits); when it is accepted, scan every bitmap's runs,
 * write it again both compactly and fully allocated, read that back and
 * check that the dirty counts survived, and allocate every cluster in
 * place as the filter does.  Any crash, sanitizer report, hang or abort
 * is a bug.
 */

#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qad-error.h"
#include "qad-limits.h"
#include "lsb-bits.h"
#include "qdb.h"

/* The limit the replay script's FUZZ_PEAK_LIMIT is derived from. */
#define FUZZ_MAX_QDB (512 << 10)

static void
quiet (const char *msg)
{
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
rewrite (struct qdb_file *qdb, bool allocate_all)
{
  struct qdb_membuf out = { 0 };
  struct qdb_io io;
  struct qdb_file *again;
  size_t i;

  qdb_io_init_mem (&io, &out, "out.qdb");
  if (qdb_write (&io, qdb, allocate_all) == 0) {
    again = qdb_read (&io, true);
    if (!again || again->nr_bitmaps != qdb->nr_bitmaps)
      abort ();
    for (i = 0; i < qdb->nr_bitmaps; ++i)
      if (qdb_dirty_granules (&again->bitmaps[i]) !=
          qdb_dirty_granules (&qdb->bitmaps[i]))
        abort ();
    qdb_free (again);
  }
  free (out.data);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qdb_membuf mb;
  struct qdb_io io;
  struct qdb_file *qdb;
  size_t i;

  /* A small limit, so that the peak-memory bound is tight. */
  qad_limits.max_qdb_bytes = FUZZ_MAX_QDB;
  qad_set_error_handler (quiet);
  mb.data = malloc (size ? size : 1);
  if (!mb.data)
    abort ();
  memcpy (mb.data, data, size);
  mb.size = mb.alloc = size;
  qdb_io_init_mem (&io, &mb, "fuzz.qdb");
  qdb = qdb_read (&io, true);
  if (qdb) {
    for (i = 0; i < qdb->nr_bitmaps; ++i) {
      const struct qdb_bitmap *bm = &qdb->bitmaps[i];
      uint64_t n = 0, total = 0;
      while (n < bm->nr_granules) {
        uint64_t run = bits_run (bm->bits, n, bm->nr_granules, NULL);
        if (run == 0)
          abort ();
        if (bit_test (bm->bits, n))
          total += run;
        n += run;
      }
      if (total != qdb_dirty_granules (bm))
        abort ();
      (void) qdb_dirty_bytes (bm);
    }
    rewrite (qdb, false);
    rewrite (qdb, true);
    for (i = 0; i < qdb->nr_bitmaps; ++i)
      if (qdb_allocate_all (&io, qdb, &qdb->bitmaps[i]) == -1)
        abort ();
    qdb_free (qdb);
    /* After allocation in place the file must still be valid. */
    qdb = qdb_read (&io, true);
    if (!qdb)
      abort ();
    qdb_free (qdb);
  }
  free (mb.data);
  return 0;
}
