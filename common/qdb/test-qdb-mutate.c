/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Mutation test of the QDB parser (a poor man's fuzzer that runs in
 * "make check", under ASan/UBSan and valgrind too): take valid files,
 * corrupt random bytes and fields, and require that qdb_read never
 * crashes, and that whatever it accepts can be written and read back.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "qad-error.h"
#include "lsb-bits.h"
#include "qdb.h"

static void
quiet (const char *msg)
{
}

static struct qdb_membuf
make_file (unsigned cbits, bool allocate_all)
{
  struct qdb_membuf mb = { 0 };
  struct qdb_io io;
  struct qdb_file *qdb = qdb_new ("m.qdb", cbits);
  int i;

  assert (qdb);
  i = qdb_add_bitmap (qdb, "one", 512, 3 << 20, QDB_FLAG_ENABLED);
  assert (i == 0);
  i = qdb_add_bitmap (qdb, "two", 65536, 3 << 20, 0);
  assert (i == 1);
  bits_set_range (qdb->bitmaps[0].bits, 3, 701);
  bits_set_range (qdb->bitmaps[1].bits, 0, 48);
  qdb_io_init_mem (&io, &mb, "m.qdb");
  assert (qdb_write (&io, qdb, allocate_all) == 0);
  qdb_free (qdb);
  return mb;
}

int
main (int argc, char **argv)
{
  unsigned seed = argc > 1 ? atoi (argv[1]) : 12345;
  int iterations = argc > 2 ? atoi (argv[2]) : 20000;
  int accepted = 0, it;
  struct qdb_membuf base[3];

  qad_set_error_handler (quiet);
  srand (seed);
  base[0] = make_file (9, true);
  base[1] = make_file (9, false);
  base[2] = make_file (12, true);

  for (it = 0; it < iterations; ++it) {
    struct qdb_membuf *b = &base[it % 3];
    struct qdb_membuf mb = { 0 };
    struct qdb_io io;
    struct qdb_file *qdb;
    int n, j;

    mb.size = mb.alloc = b->size;
    mb.data = malloc (b->size);
    memcpy (mb.data, b->data, b->size);
    n = 1 + rand () % 4;
    for (j = 0; j < n; ++j) {
      size_t off = rand () % mb.size;
      switch (rand () % 5) {
      case 0: mb.data[off] ^= 1 << (rand () % 8); break;
      case 1: mb.data[off] = rand (); break;
      case 2:                   /* a header or directory field */
        off = (rand () % 2 ? 0 : 512) + (rand () % 16) * 4;
        if (off + 4 <= mb.size)
          store_be32 (mb.data + off, rand () % 3 ? rand () % 4096 : rand ());
        break;
      case 3: mb.size = rand () % mb.size + 1; break;
      default:
        if (off + 8 <= mb.size)
          store_be64 (mb.data + (off & ~7), (uint64_t) (rand () % 64) * 512);
      }
    }
    qdb_io_init_mem (&io, &mb, "m.qdb");
    qdb = qdb_read (&io, true);
    if (qdb) {
      struct qdb_membuf out = { 0 };
      struct qdb_file *again;

      accepted++;
      qdb_io_init_mem (&io, &out, "out.qdb");
      if (qdb_write (&io, qdb, it & 1) == 0) {
        again = qdb_read (&io, true);
        assert (again);
        assert (again->nr_bitmaps == qdb->nr_bitmaps);
        for (j = 0; j < (int) qdb->nr_bitmaps; ++j)
          assert (qdb_dirty_granules (&again->bitmaps[j]) ==
                  qdb_dirty_granules (&qdb->bitmaps[j]));
        qdb_free (again);
      }
      free (out.data);
      qdb_free (qdb);
    }
    free (mb.data);
  }
  printf ("%d mutations, %d accepted, none crashed\n", iterations, accepted);
  for (it = 0; it < 3; ++it)
    free (base[it].data);
  return 0;
}
