/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the live-backup parts of common/qdb: the control
 * protocol's messages, the shared bitmap operations (all or nothing is
 * the caller's business, but each must check its input), qdb_clone
 * (which must not disturb its source), and the region map (written
 * clear, applied to enabled bitmaps only, refused when inconsistent).
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "qad-error.h"
#include "lsb-bits.h"
#include "qdb-control.h"
#include "qdb-ops.h"
#include "qdb.h"

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static void
test_request_round_trip (void)
{
  const struct qdb_op ops[] = {
    { QDB_OP_ADD, "b2", NULL, 4096, false },
    { QDB_OP_FREEZE, "b1", NULL, 0, false },
    { QDB_OP_MERGE, "b1", "b3", 0, false },
    { QDB_OP_INFO, NULL, NULL, 0, false },
    { QDB_OP_CLEAR, "b1", NULL, 0, true },
  };
  struct qdb_op got[QDB_CTL_MAX_OPS];
  char err[256], *body;
  size_t len, n;

  body = qdb_ctl_encode_request (ops, 5, &len);
  assert (body);
  assert (strcmp (body, "add b2 4096\nfreeze b1\nmerge b1 b3\ninfo\n"
                  "dirty-all b1\n") == 0);
  assert (qdb_ctl_decode_request (body, len, got, &n, err, sizeof err) == 0);
  assert (n == 5);
  assert (got[4].kind == QDB_OP_CLEAR && got[4].dirty);
  assert (!got[2].dirty);
  assert (got[0].kind == QDB_OP_ADD && strcmp (got[0].name, "b2") == 0 &&
          got[0].granularity == 4096);
  assert (got[2].kind == QDB_OP_MERGE && strcmp (got[2].into, "b3") == 0);
  assert (got[3].kind == QDB_OP_INFO);
  free (body);

  /* A name the protocol cannot carry is refused when encoding. */
  {
    const struct qdb_op bad = { QDB_OP_CLEAR, "a b", NULL, 0, false };
    assert (qdb_ctl_encode_request (&bad, 1, &len) == NULL);
  }
}

static void
expect_bad_request (const char *text, const char *want)
{
  char buf[256], err[256];
  struct qdb_op ops[QDB_CTL_MAX_OPS];
  size_t n, len = strlen (text);

  memcpy (buf, text, len);
  assert (qdb_ctl_decode_request (buf, len, ops, &n, err, sizeof err) == -1);
  if (strstr (err, want) == NULL) {
    fprintf (stderr, "request %s: error \"%s\" lacks \"%s\"\n", text, err,
             want);
    abort ();
  }
}

static void
test_bad_requests (void)
{
  expect_bad_request ("", "malformed");
  expect_bad_request ("info", "malformed");
  expect_bad_request ("info\n\x01\n", "byte 0x01 at offset 5");
  expect_bad_request ("\n", "unknown operation");
  expect_bad_request ("add b\n", "add takes 2");
  expect_bad_request ("add b 1 2\n", "add takes 2");
  expect_bad_request ("add b 99999999999999999999\n", "not a decimal");
  expect_bad_request ("add b -1\n", "not a decimal");
  expect_bad_request ("remove  b\n", "remove takes 1");
  expect_bad_request ("clear a:b\n", "invalid bitmap name");
  expect_bad_request ("merge a b/c\n", "merge destination");
}

static void
test_replies (void)
{
  char ok[] = "ok\nbitmap b1 65536 frozen 131072 1048576\n";
  char bad[] = "error no bitmap named \"x\"\n";
  char junk[] = "ok\nbitmap b1 x frozen 1 2\n";
  struct qdb_ctl_bitmap_info *info;
  const char *msg;
  size_t n;

  assert (qdb_ctl_decode_reply (ok, strlen (ok), &info, &n, &msg) == 0);
  assert (n == 1 && strcmp (info[0].name, "b1") == 0 &&
          info[0].granularity == 65536 &&
          strcmp (info[0].state, "frozen") == 0 &&
          info[0].dirty_bytes == 131072 && info[0].disk_size == 1048576);
  free (info);
  assert (qdb_ctl_decode_reply (bad, strlen (bad), &info, &n, &msg) == 1);
  assert (strcmp (msg, "no bitmap named \"x\"") == 0);
  assert (qdb_ctl_decode_reply (junk, strlen (junk), &info, &n, &msg) == -1);
}

static struct qdb_file *
model (uint64_t region_size)
{
  struct qdb_file *qdb = qdb_new ("t.qdb", 9);

  assert (qdb);
  assert (qdb_add_bitmap (qdb, "on", 4096, 8 << 20, QDB_FLAG_ENABLED) == 0);
  assert (qdb_add_bitmap (qdb, "off", 4096, 8 << 20, 0) == 1);
  bit_set (qdb->bitmaps[0].bits, 3);
  qdb->region_size = region_size;
  return qdb;
}

static void
test_ops_and_clone (void)
{
  struct qdb_file *qdb = model (0), *copy;
  const struct qdb_op merge = { QDB_OP_MERGE, "on", "off", 0, false };
  const struct qdb_op nosuch = { QDB_OP_REMOVE, "nosuch", NULL, 0, false };
  const struct qdb_op freeze = { QDB_OP_FREEZE, "on", NULL, 0, false };
  const struct qdb_op release = { QDB_OP_RELEASE, "on", NULL, 0, false };
  const struct qdb_op freeze_off = { QDB_OP_FREEZE, "off", NULL, 0, false };
  const struct qdb_op add = { QDB_OP_ADD, "new", NULL, 1000, false };
  const struct qdb_op enable = { QDB_OP_ENABLE, "off", NULL, 0, false };
  const struct qdb_op clear = { QDB_OP_CLEAR, "off", NULL, 0, false };
  const struct qdb_op dirty = { QDB_OP_CLEAR, "off", NULL, 0, true };
  uint64_t t0;

  qdb->bitmaps[0].table_offset = 4242;  /* as if laid out elsewhere */
  t0 = qdb->bitmaps[0].table[0];
  copy = qdb_clone (qdb);
  assert (copy);
  assert (qdb->bitmaps[0].table_offset == 4242);
  assert (qdb->bitmaps[0].table[0] == t0);
  assert (qdb->dir_offset == 0);
  assert (bit_test (copy->bitmaps[0].bits, 3));

  assert (qdb_op_apply (copy, &merge, 0) == 0);
  assert (bit_test (copy->bitmaps[1].bits, 3));
  assert (qdb_op_apply (copy, &nosuch, 0) == -1);
  assert (strstr (last_error, "no bitmap named \"nosuch\""));
  assert (qdb_op_apply (copy, &freeze, 0) == -1);
  assert (strstr (last_error, "only possible while the file is served"));
  assert (qdb_op_apply_live (copy, &freeze, 0) == 0);
  assert (!(copy->bitmaps[0].flags & QDB_FLAG_ENABLED));
  assert (qdb_op_apply_live (copy, &release, 0) == 0);
  assert (!(copy->bitmaps[0].flags & QDB_FLAG_ENABLED));
  copy->bitmaps[0].flags |= QDB_FLAG_ENABLED;
  assert (qdb_op_apply (copy, &add, 0) == -1);
  assert (strstr (last_error, "granularity 1000 is not a power of 2"));

  /* IN_USE: merging from or into it, enabling it are refused; clearing
   * (to clean or to all dirty) is allowed and drops the flag.
   */
  copy->bitmaps[1].flags |= QDB_FLAG_IN_USE;
  assert (qdb_op_apply (copy, &merge, 0) == -1);
  assert (strstr (last_error, "\"off\" has the IN_USE flag"));
  assert (qdb_op_apply (copy, &enable, 0) == -1);
  assert (strstr (last_error, "refusing to enable"));
  /* Live, freezing obeys the same rule. */
  assert (qdb_op_apply_live (copy, &freeze_off, 0) == -1);
  assert (strstr (last_error, "t.qdb: bitmap \"off\" has the IN_USE flag"));
  assert (strstr (last_error, "refusing to freeze"));
  assert (qdb_op_apply (copy, &dirty, 0) == 0);
  assert (!(copy->bitmaps[1].flags & QDB_FLAG_IN_USE));
  assert (qdb_dirty_granules (&copy->bitmaps[1]) == (8 << 20) / 4096);
  assert (qdb_dirty_bytes (&copy->bitmaps[1]) == 8 << 20);
  copy->bitmaps[1].flags |= QDB_FLAG_IN_USE;
  assert (qdb_op_apply (copy, &clear, 0) == 0);
  assert (qdb_dirty_granules (&copy->bitmaps[1]) == 0);
  assert (qdb_op_apply (copy, &enable, 0) == 0);
  qdb_free (copy);
  qdb_free (qdb);
}

static void
test_region_map (void)
{
  struct qdb_file *qdb = model (1 << 20), *back;
  struct qdb_membuf mb = { 0 };
  struct qdb_io io;
  uint8_t byte;

  qdb_io_init_mem (&io, &mb, "t.qdb");
  assert (qdb_write (&io, qdb, true) == 0);
  assert (qdb->incompat & QDB_INCOMPAT_REGION_MAP);
  assert (qdb->region_map_size == 2);   /* 8 regions: 8 / 8 + 1 bytes */

  /* Mark region 2 (granules 512..767), as a writer would. */
  byte = 0x04;
  memcpy (mb.data + qdb->region_map_offset, &byte, 1);
  back = qdb_read (&io, true);
  assert (back);
  assert (back->region_recovered == 256);
  assert (bits_all_set (back->bitmaps[0].bits, 512, 768));
  assert (!bit_test (back->bitmaps[0].bits, 511));
  assert (!bit_test (back->bitmaps[0].bits, 768));
  assert (!bit_test (back->bitmaps[1].bits, 600));     /* disabled */
  qdb_free (back);

  /* The bit without the extension, and a map too short for the disk. */
  {
    struct qdb_membuf copy = { malloc (mb.size), mb.size, mb.size };
    struct qdb_io cio;
    uint64_t v;

    memcpy (copy.data, mb.data, mb.size);
    qdb_io_init_mem (&cio, &copy, "t.qdb");
    v = htobe64 (1);
    memcpy (copy.data + 32, &v, 8);     /* fine: same value */
    assert ((back = qdb_read (&cio, true)) != NULL);
    qdb_free (back);
    v = 0;
    memcpy (copy.data + 32, &v, 8);
    assert (qdb_read (&cio, true) == NULL);
    assert (strstr (last_error, "bit 0 (region map) is clear but the "
                    "region map header extension is present"));
    free (copy.data);
  }

  /* Without region_size the map and the bit go away on rewrite. */
  qdb->region_size = 0;
  free (mb.data);
  mb = (struct qdb_membuf) { 0 };
  qdb_io_init_mem (&io, &mb, "t.qdb");
  assert (qdb_write (&io, qdb, true) == 0);
  assert ((qdb->incompat & QDB_INCOMPAT_REGION_MAP) == 0);
  back = qdb_read (&io, true);
  assert (back && back->region_size == 0);
  qdb_free (back);
  free (mb.data);
  qdb_free (qdb);
}

int
main (void)
{
  qad_set_error_handler (capture);
  test_request_round_trip ();
  test_bad_requests ();
  test_replies ();
  test_ops_and_clone ();
  test_region_map ();
  printf ("test-qdb-live: ok\n");
  return 0;
}
