/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the QDB parser and serializer: round trips, preserved
 * unknown parts, and one corrupt file per validation rule, each checked
 * for the field named in the error message.
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
#include "qdb-layout.h"
#include "qdb.h"

static char last_error[1024];
static int nr_errors;

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
  nr_errors++;
}

/* The standard file: cluster 512, b1 (gran 512, enabled) over an
 * 8 MiB disk (4 data clusters), b2 (gran 4096, disabled).
 */
static struct qdb_membuf
make_file (bool allocate_all)
{
  struct qdb_membuf mb = { 0 };
  struct qdb_io io;
  struct qdb_file *qdb;
  int i;

  qdb = qdb_new ("t.qdb", 9);
  assert (qdb);
  i = qdb_add_bitmap (qdb, "b1", 512, 8 << 20, QDB_FLAG_ENABLED);
  assert (i == 0);
  i = qdb_add_bitmap (qdb, "b2", 4096, 8 << 20, 0);
  assert (i == 1);
  assert (qdb->bitmaps[0].table_size == 4);
  assert (qdb->bitmaps[1].table_size == 1);
  /* b1: cluster 0 mixed, cluster 1 clean, cluster 2 all ones, 3 mixed. */
  bits_set_range (qdb->bitmaps[0].bits, 5, 18);
  bits_set_range (qdb->bitmaps[0].bits, 2 * 4096, 3 * 4096);
  bit_set (qdb->bitmaps[0].bits, 16383);
  bit_set (qdb->bitmaps[1].bits, 100);
  qdb_io_init_mem (&io, &mb, "t.qdb");
  assert (qdb_write (&io, qdb, allocate_all) == 0);
  qdb_free (qdb);
  return mb;
}

static struct qdb_file *
read_mem (struct qdb_membuf *mb, bool load)
{
  struct qdb_io io;

  qdb_io_init_mem (&io, mb, "t.qdb");
  return qdb_read (&io, load);
}

static void
test_round_trip (bool allocate_all)
{
  struct qdb_membuf mb = make_file (allocate_all), mb2 = { 0 };
  struct qdb_file *qdb;
  struct qdb_bitmap *b1, *b2;
  struct qdb_io io;

  qdb = read_mem (&mb, true);
  assert (qdb);
  assert (qdb->nr_bitmaps == 2);
  assert (qdb->leaked_clusters == 0);
  b1 = qdb_find_bitmap (qdb, "b1");
  b2 = qdb_find_bitmap (qdb, "b2");
  assert (b1 && b2);
  assert (b1->flags == QDB_FLAG_ENABLED && b2->flags == 0);
  assert (b1->granularity == 512 && b2->granularity == 4096);
  assert (b1->disk_size == 8 << 20);
  assert (qdb_dirty_granules (b1) == 13 + 4096 + 1);
  assert (qdb_dirty_bytes (b1) == (13 + 4096 + 1) * 512);
  assert (qdb_dirty_granules (b2) == 1);
  assert (!bit_test (b1->bits, 4));
  assert (bit_test (b1->bits, 5) && bit_test (b1->bits, 17));
  assert (!bit_test (b1->bits, 18));
  if (!allocate_all) {
    assert (b1->table[1] == 0);
    assert (b1->table[2] == QDB_ENTRY_ALL_ONES);
    assert (b1->table[0] != 0 && b1->table[3] != 0);
  }
  else {
    size_t k;
    for (k = 0; k < 4; ++k)
      assert (b1->table[k] & QDB_ENTRY_OFFSET_MASK);
  }

  /* Write again and compare bytes (the layout is deterministic). */
  qdb_io_init_mem (&io, &mb2, "t2.qdb");
  assert (qdb_write (&io, qdb, allocate_all) == 0);
  assert (mb2.size == mb.size);
  assert (memcmp (mb.data, mb2.data, mb.size) == 0);
  qdb_free (qdb);
  free (mb.data);
  free (mb2.data);
}

/* qdb_allocate_all in place, then the file still reads the same. */
static void
test_allocate_all (void)
{
  struct qdb_membuf mb = make_file (false);
  struct qdb_file *qdb;
  struct qdb_io io;
  size_t k;

  qdb = read_mem (&mb, true);
  assert (qdb);
  qdb_io_init_mem (&io, &mb, "t.qdb");
  assert (qdb_allocate_all (&io, qdb, &qdb->bitmaps[0]) == 0);
  assert (qdb->bitmaps[0].table[1] & QDB_ENTRY_OFFSET_MASK);
  assert (qdb->bitmaps[0].table[2] == QDB_ENTRY_ALL_ONES);
  qdb_free (qdb);
  qdb = read_mem (&mb, true);
  assert (qdb);
  assert (qdb_dirty_granules (&qdb->bitmaps[0]) == 13 + 4096 + 1);
  for (k = 0; k < 4; ++k)
    assert (qdb->bitmaps[0].table[k] != 0);
  qdb_free (qdb);
  free (mb.data);
}

/* Unknown header extensions, compat bits, header tail and extra data
 * survive a rewrite; unknown autoclear bits do not (every writer clears
 * them), in a rewrite or in place.
 */
static void
test_preserve (void)
{
  struct qdb_membuf mb = { 0 }, mb2 = { 0 };
  struct qdb_file *qdb;
  struct qdb_io io;
  uint8_t extra[16] = { 0, 0, 0, 9, 0, 0, 0, 3, 'a', 'b', 'c' };

  qdb = qdb_new ("p.qdb", 12);
  assert (qdb_add_bitmap (qdb, "x", 65536, 1 << 30, QDB_FLAG_ENABLED) == 0);
  qdb->compat = 0x10;
  qdb->autoclear = 0x4;
  qdb->header_length = 72;
  qdb->header_tail = calloc (1, 8);
  qdb->header_tail[3] = 0x77;
  assert (qdb_record_vector_append (&qdb->exts, (struct qdb_record) {
        .type = 0x12345678, .length = 5,
        .data = (uint8_t *) strdup ("hello") }) == 0);
  qdb->feature_names = calloc (1, sizeof *qdb->feature_names);
  qdb->feature_names[0].type = 1;
  qdb->feature_names[0].bit = 4;
  strcpy (qdb->feature_names[0].name, "shiny");
  qdb->nr_feature_names = 1;
  qdb->bitmaps[0].extra_data_size = 16;
  qdb->bitmaps[0].extra_data = malloc (16);
  memcpy (qdb->bitmaps[0].extra_data, extra, 16);
  qdb_io_init_mem (&io, &mb, "p.qdb");
  assert (qdb_write (&io, qdb, false) == 0);
  qdb_free (qdb);

  qdb = read_mem (&mb, true);
  assert (qdb);
  assert (qdb->compat == 0x10 && qdb->autoclear == 0);
  assert (qdb->header_length == 72 && qdb->header_tail[3] == 0x77);
  assert (qdb->exts.len == 1 && qdb->exts.ptr[0].type == 0x12345678);
  assert (qdb->exts.ptr[0].length == 5);
  assert (memcmp (qdb->exts.ptr[0].data, "hello", 5) == 0);
  assert (qdb->nr_feature_names == 1);
  assert (strcmp (qdb->feature_names[0].name, "shiny") == 0);
  assert (qdb->bitmaps[0].extra_data_size == 16);
  assert (memcmp (qdb->bitmaps[0].extra_data, extra, 16) == 0);
  qdb_free (qdb);

  /* An unknown autoclear bit set by someone else: readers keep it,
   * a rewrite clears it and changes nothing else.
   */
  store_be64 (mb.data + QDB_HDR_AUTOCLEAR, 0x4);
  qdb = read_mem (&mb, true);
  assert (qdb && qdb->autoclear == 0x4);
  qdb_io_init_mem (&io, &mb2, "p2.qdb");
  assert (qdb_write (&io, qdb, false) == 0);
  assert (load_be64 (mb2.data + QDB_HDR_AUTOCLEAR) == 0);
  assert (load_be64 (mb2.data + QDB_HDR_COMPAT) == 0x10);
  store_be64 (mb.data + QDB_HDR_AUTOCLEAR, 0);
  assert (mb.size == mb2.size && memcmp (mb.data, mb2.data, mb.size) == 0);
  qdb_free (qdb);

  /* Clearing unknown autoclear bits in place. */
  store_be64 (mb.data + QDB_HDR_AUTOCLEAR, 0x4);
  qdb = read_mem (&mb, false);
  assert (qdb && qdb->autoclear == 0x4);
  qdb_io_init_mem (&io, &mb, "p.qdb");
  assert (qdb_clear_unknown_autoclear (&io, qdb) == 0);
  qdb_free (qdb);
  qdb = read_mem (&mb, false);
  assert (qdb && qdb->autoclear == 0 && qdb->compat == 0x10);
  qdb_free (qdb);
  free (mb.data);
  free (mb2.data);
}

/* Model-level errors. */
static void
test_model_errors (void)
{
  struct qdb_file *qdb;

  assert (qdb_new ("m.qdb", 8) == NULL);
  assert (strstr (last_error, "cluster_bits 8"));
  assert (qdb_new ("m.qdb", 22) == NULL);
  qdb = qdb_new ("m.qdb", 16);
  assert (qdb_add_bitmap (qdb, "a", 1000, 1 << 20, 0) == -1);
  assert (strstr (last_error, "granularity 1000"));
  assert (qdb_add_bitmap (qdb, "a", 256, 1 << 20, 0) == -1);
  assert (qdb_add_bitmap (qdb, "", 512, 1 << 20, 0) == -1);
  assert (strstr (last_error, "name size 0"));
  assert (qdb_add_bitmap (qdb, "a:b", 512, 1 << 20, 0) == -1);
  assert (qdb_add_bitmap (qdb, "a b", 512, 1 << 20, 0) == -1);
  assert (qdb_add_bitmap (qdb, "a", 512, 1 << 20, 0x4) == -1);
  assert (qdb_add_bitmap (qdb, "a", 512, 1 << 20, 0) == 0);
  assert (qdb_add_bitmap (qdb, "a", 512, 1 << 20, 0) == -1);
  assert (strstr (last_error, "already exists"));
  /* Every bitmap of a file describes the same disk. */
  assert (qdb_add_bitmap (qdb, "zero", 512, 0, 0) == -1);
  assert (strstr (last_error, "disk size 0 differs"));
  assert (qdb_add_bitmap (qdb, "b", 4096, 1 << 20, 0) == 1);
  assert (qdb_remove_bitmap (qdb, 0) == 0);
  assert (qdb->nr_bitmaps == 1 && strcmp (qdb->bitmaps[0].name, "b") == 0);
  qdb_free (qdb);
}

/* Corrupt files: apply a patch to the standard (allocated) file and
 * expect qdb_read to fail with a message containing WANT.
 */
typedef void (*patch_fn) (struct qdb_membuf *mb);

static void
expect_corrupt (const char *what, patch_fn patch, const char *want)
{
  struct qdb_membuf mb = make_file (true);
  struct qdb_file *qdb;

  patch (&mb);
  last_error[0] = '\0';
  qdb = read_mem (&mb, true);
  if (qdb != NULL || strstr (last_error, want) == NULL ||
      strstr (last_error, "t.qdb") == NULL) {
    fprintf (stderr, "corrupt test %s: expected error containing \"%s\", "
             "got %s \"%s\"\n", what, want, qdb ? "success" : "error",
             last_error);
    exit (EXIT_FAILURE);
  }
  printf ("ok corrupt %s: %s\n", what, last_error);
  free (mb.data);
}

/* Layout of the standard allocated file (cluster 512):
 * 0 header, 512 directory (2 entries of 48 bytes), 1024 b1 table,
 * 1536..3583 b1 data (4 clusters), 3584 b2 table, 4096 b2 data.
 */
#define DIR 512
#define E1 (DIR)
#define E2 (DIR + 48)
#define T1 1024
#define T2 3584

/* PATCH (NAME, STATEMENT): a one-statement patch of the file M. */
#define PATCH(name, stmt) \
  static void name (struct qdb_membuf *m) { stmt; }

PATCH (p_magic, m->data[QDB_HDR_MAGIC] = 'X')
PATCH (p_version, store_be32 (m->data + QDB_HDR_VERSION, 2))
PATCH (p_cbits_lo, store_be32 (m->data + QDB_HDR_CLUSTER_BITS, 8))
PATCH (p_cbits_hi, store_be32 (m->data + QDB_HDR_CLUSTER_BITS, 40))
PATCH (p_hlen_short, store_be32 (m->data + QDB_HDR_HEADER_LENGTH, 32))
PATCH (p_hlen_past, store_be32 (m->data + QDB_HDR_HEADER_LENGTH, 4096))
PATCH (p_hlen_odd, store_be32 (m->data + QDB_HDR_HEADER_LENGTH, 68))
PATCH (p_incompat, store_be64 (m->data + QDB_HDR_INCOMPAT, 1 << 5))
static void
p_incompat_named (struct qdb_membuf *m)
{
  uint8_t *e = m->data + QDB_HEADER_LENGTH + QDB_REC_DATA;

  store_be64 (m->data + QDB_HDR_INCOMPAT, 1 << 5);
  store_be32 (m->data + QDB_HEADER_LENGTH + QDB_REC_TYPE,
              QDB_EXT_FEATURE_NAMES);
  store_be32 (m->data + QDB_HEADER_LENGTH + QDB_REC_LENGTH,
              QDB_FEATURE_NAME_ENTRY);
  e[QDB_FNAME_TYPE] = 0;
  e[QDB_FNAME_BIT] = 5;
  memcpy (e + QDB_FNAME_NAME, "compressed", 10);
}
static void
p_ext_past (struct qdb_membuf *m)
{
  store_be32 (m->data + 64, 0x1234);
  store_be32 (m->data + 68, 1000);
}
static void
p_ext_no_end (struct qdb_membuf *m)
{
  size_t off;
  for (off = 64; off + 8 <= 512; off += 8) {
    store_be32 (m->data + off, 0x99);
    store_be32 (m->data + off + 4, 0);
  }
}
static void
p_ext_dup_names (struct qdb_membuf *m)
{
  store_be32 (m->data + 64, QDB_EXT_FEATURE_NAMES);
  store_be32 (m->data + 68, 0);
  store_be32 (m->data + 72, QDB_EXT_FEATURE_NAMES);
  store_be32 (m->data + 76, 0);
}
PATCH (p_nb_mismatch, store_be32 (m->data + QDB_HDR_NB_BITMAPS, 0))
PATCH (p_nb_huge, store_be32 (m->data + QDB_HDR_NB_BITMAPS, 70000))
PATCH (p_dir_past_eof, store_be64 (m->data + QDB_HDR_DIR_OFFSET, 1 << 20))
PATCH (p_dir_unaligned, store_be64 (m->data + QDB_HDR_DIR_OFFSET, 600))
static void
p_dir_in_c0 (struct qdb_membuf *m)
{
  store_be64 (m->data + QDB_HDR_DIR_OFFSET, 0);
  store_be32 (m->data + QDB_HDR_NB_BITMAPS, 2);
}
PATCH (p_dir_size_short, store_be32 (m->data + QDB_HDR_DIR_SIZE, 88))
PATCH (p_dir_size_long, store_be32 (m->data + QDB_HDR_DIR_SIZE, 104))
PATCH (p_tbl_unaligned, store_be64 (m->data + E1, T1 + 8))
PATCH (p_tbl_past_eof, store_be64 (m->data + E2, 1 << 24))
PATCH (p_gran_not_pow2,
       store_be32 (m->data + E1 + QDB_DIRENT_GRANULARITY, 1000))
PATCH (p_gran_small, store_be32 (m->data + E1 + QDB_DIRENT_GRANULARITY, 256))
PATCH (p_name_zero, store_be16 (m->data + E1 + QDB_DIRENT_NAME_SIZE, 0))
PATCH (p_name_big, store_be16 (m->data + E1 + QDB_DIRENT_NAME_SIZE, 1024))
PATCH (p_name_dup, m->data[E2 + QDB_DIR_ENTRY_FIXED + 1] = '1')
PATCH (p_name_nul, m->data[E2 + QDB_DIR_ENTRY_FIXED + 1] = 0)
PATCH (p_flags, store_be16 (m->data + E1 + QDB_DIRENT_FLAGS, 0x8001))
PATCH (p_tsize, store_be32 (m->data + E1 + QDB_DIRENT_TABLE_SIZE, 3))
PATCH (p_extra_odd, store_be32 (m->data + E1 + QDB_DIRENT_EXTRA_DATA_SIZE, 4))
static void
p_extra_bad_record (struct qdb_membuf *m)
{
  /* Make entry 1 carry 8 bytes of extra data whose record is too long:
   * rewrite it as 40 fixed + 8 extra + 2 name -> 56 bytes, shift b2.
   */
  uint8_t e2[48];
  memcpy (e2, m->data + E2, 48);
  store_be32 (m->data + E1 + QDB_DIRENT_EXTRA_DATA_SIZE, 8);
  store_be32 (m->data + E1 + 40, 7);
  store_be32 (m->data + E1 + 44, 100);
  memcpy (m->data + E1 + 48, "b1", 2);
  memset (m->data + E1 + 50, 0, 6);
  memcpy (m->data + E1 + 56, e2, 48);
  store_be32 (m->data + QDB_HDR_DIR_SIZE, 104);
}
PATCH (p_tbl_overlap_dir, store_be64 (m->data + E2, DIR))
PATCH (p_tbl_overlap_tbl, store_be64 (m->data + E2, T1))
PATCH (p_data_overlap, store_be64 (m->data + T1 + 8, 1536))
PATCH (p_data_past_eof, store_be64 (m->data + T2, UINT64_C (0x100000000000)))
PATCH (p_entry_reserved, store_be64 (m->data + T1, 1536 | 2))
PATCH (p_entry_both, store_be64 (m->data + T1, 1536 | 1))
PATCH (p_entry_high, store_be64 (m->data + T1, 1536 | (UINT64_C (1) << 60)))
PATCH (p_truncated, m->size = 3000)
PATCH (p_tiny, m->size = 10)
PATCH (p_disk_huge,
       store_be64 (m->data + E1 + QDB_DIRENT_DISK_SIZE, UINT64_MAX))

PATCH (p_end_len, store_be32 (m->data + QDB_HEADER_LENGTH + QDB_REC_LENGTH, 8))
PATCH (p_disk_differs,
       store_be64 (m->data + E2 + QDB_DIRENT_DISK_SIZE, 4 << 20))
static void
p_empty_table_offset (struct qdb_membuf *m)
{
  store_be64 (m->data + E1 + QDB_DIRENT_DISK_SIZE, 0);
  store_be32 (m->data + E1 + QDB_DIRENT_TABLE_SIZE, 0);
}

/* Files the spec defines as valid although a writer never makes them:
 * PATCH the standard file, expect qdb_read to accept it, CHECK the
 * model, and a rewrite to be a file that reads back.
 */
typedef void (*check_fn) (struct qdb_file *qdb, struct qdb_membuf *rewritten);

static void
expect_valid (const char *what, patch_fn patch, check_fn check)
{
  struct qdb_membuf mb = make_file (true), mb2 = { 0 };
  struct qdb_file *qdb, *back;
  struct qdb_io io;

  patch (&mb);
  qdb = read_mem (&mb, true);
  if (!qdb) {
    fprintf (stderr, "valid test %s: refused: %s\n", what, last_error);
    exit (EXIT_FAILURE);
  }
  qdb_io_init_mem (&io, &mb2, "t2.qdb");
  assert (qdb_write (&io, qdb, false) == 0);
  back = read_mem (&mb2, true);
  assert (back);
  check (qdb, &mb2);
  printf ("ok valid %s\n", what);
  qdb_free (back);
  qdb_free (qdb);
  free (mb.data);
  free (mb2.data);
}

/* Padding and reserved bytes are ignored and written as zero. */
static void
p_padding (struct qdb_membuf *m)
{
  const size_t x = QDB_HEADER_LENGTH;

  memset (m->data + QDB_HDR_RESERVED, 0xee, 8);
  store_be32 (m->data + x + QDB_REC_TYPE, 0x99);
  store_be32 (m->data + x + QDB_REC_LENGTH, 3);
  memcpy (m->data + x + QDB_REC_DATA, "abc\xee\xee\xee\xee\xee", 8);
  memset (m->data + E1 + QDB_DIRENT_RESERVED, 0xee, 8);
  memset (m->data + E1 + QDB_DIR_ENTRY_FIXED + 2, 0xee, 6);
}
static void
c_padding (struct qdb_file *qdb, struct qdb_membuf *out)
{
  static const uint8_t zero[8];
  const size_t x = QDB_HEADER_LENGTH;

  assert (qdb->exts.len == 1 && qdb->exts.ptr[0].length == 3);
  assert (memcmp (out->data + QDB_HDR_RESERVED, zero, 8) == 0);
  assert (memcmp (out->data + x + QDB_REC_DATA, "abc\0\0\0\0\0", 8) == 0);
  assert (memcmp (out->data + DIR + QDB_DIRENT_RESERVED, zero, 8) == 0);
  assert (memcmp (out->data + DIR + QDB_DIR_ENTRY_FIXED + 2, zero, 6) == 0);
}

/* An unknown extension type may repeat: every copy is kept, in order. */
static void
p_repeated_unknown (struct qdb_membuf *m)
{
  size_t x;

  for (x = QDB_HEADER_LENGTH; x < QDB_HEADER_LENGTH + 32; x += 16) {
    store_be32 (m->data + x + QDB_REC_TYPE, 0x99);
    store_be32 (m->data + x + QDB_REC_LENGTH, 1);
    m->data[x + QDB_REC_DATA] = x == QDB_HEADER_LENGTH ? 'a' : 'b';
  }
}
static void
c_repeated_unknown (struct qdb_file *qdb, struct qdb_membuf *out)
{
  assert (qdb->exts.len == 2);
  assert (qdb->exts.ptr[0].data[0] == 'a');
  assert (qdb->exts.ptr[1].data[0] == 'b');
  assert (out->data[QDB_HEADER_LENGTH + 16 + QDB_REC_DATA] == 'b');
}

/* Feature name entries with an undefined type or bit are kept and name
 * nothing.
 */
static void
p_odd_feature_names (struct qdb_membuf *m)
{
  uint8_t *e = m->data + QDB_HEADER_LENGTH + QDB_REC_DATA;

  store_be32 (m->data + QDB_HEADER_LENGTH + QDB_REC_TYPE,
              QDB_EXT_FEATURE_NAMES);
  store_be32 (m->data + QDB_HEADER_LENGTH + QDB_REC_LENGTH,
              2 * QDB_FEATURE_NAME_ENTRY);
  e[QDB_FNAME_TYPE] = 7;
  e[QDB_FNAME_BIT] = 5;
  memcpy (e + QDB_FNAME_NAME, "seven", 5);
  e += QDB_FEATURE_NAME_ENTRY;
  e[QDB_FNAME_TYPE] = 0;
  e[QDB_FNAME_BIT] = 200;
  memcpy (e + QDB_FNAME_NAME, "twohundred", 10);
}
static void
c_odd_feature_names (struct qdb_file *qdb, struct qdb_membuf *out)
{
  char buf[128];

  assert (qdb->nr_feature_names == 2);
  qdb_describe_features (qdb, 0, UINT64_C (1) << 5, buf, sizeof buf);
  assert (strcmp (buf, "bit 5") == 0);
  assert (out->data[QDB_HEADER_LENGTH + QDB_REC_DATA + QDB_FNAME_BIT] == 5);
}

/* A partial cluster at the end of the file is one leaked cluster. */
static void p_partial_tail (struct qdb_membuf *m) { m->size += 100; }
static void
c_partial_tail (struct qdb_file *qdb, struct qdb_membuf *out)
{
  assert (qdb->leaked_clusters == 0);   /* qdb_write reset it */
  assert (out->size % 512 == 0);
}

static void
test_partial_tail_leak (void)
{
  struct qdb_membuf mb = make_file (true);
  struct qdb_file *qdb;

  mb.size += 100;
  qdb = read_mem (&mb, true);
  assert (qdb && qdb->leaked_clusters == 1);
  qdb_free (qdb);
  free (mb.data);
}

/* A disk of size 0: no granules, no table, table offset 0. */
static void
test_zero_disk (void)
{
  struct qdb_membuf mb = { 0 };
  struct qdb_file *qdb;
  struct qdb_io io;

  qdb = qdb_new ("z.qdb", 9);
  assert (qdb_add_bitmap (qdb, "z", 512, 0, QDB_FLAG_ENABLED) == 0);
  qdb_set_all_dirty (&qdb->bitmaps[0]);
  qdb_io_init_mem (&io, &mb, "z.qdb");
  assert (qdb_write (&io, qdb, true) == 0);
  qdb_free (qdb);
  qdb = read_mem (&mb, true);
  assert (qdb);
  assert (qdb->bitmaps[0].table_size == 0);
  assert (qdb->bitmaps[0].table_offset == 0);
  assert (qdb->bitmaps[0].nr_granules == 0);
  assert (qdb_dirty_bytes (&qdb->bitmaps[0]) == 0);
  assert (qdb->leaked_clusters == 0);
  qdb_free (qdb);
  free (mb.data);
}

int
main (void)
{
  qad_set_error_handler (capture);

  test_round_trip (false);
  test_round_trip (true);
  test_allocate_all ();
  test_preserve ();
  test_model_errors ();

  expect_corrupt ("magic", p_magic, "magic");
  expect_corrupt ("version", p_version, "version 2");
  expect_corrupt ("cluster_bits low", p_cbits_lo, "cluster_bits 8");
  expect_corrupt ("cluster_bits high", p_cbits_hi, "cluster_bits 40");
  expect_corrupt ("header_length short", p_hlen_short, "header_length 32");
  expect_corrupt ("header_length past cluster 0", p_hlen_past,
                  "header_length 4096");
  expect_corrupt ("header_length odd", p_hlen_odd, "header_length 68");
  expect_corrupt ("unknown incompatible bit", p_incompat,
                  "unknown incompatible feature bit 5");
  expect_corrupt ("named incompatible bit", p_incompat_named,
                  "bit 5 (compressed)");
  expect_corrupt ("extension past cluster 0", p_ext_past,
                  "runs past cluster 0");
  expect_corrupt ("no end marker", p_ext_no_end, "no end marker");
  expect_corrupt ("duplicate feature table", p_ext_dup_names, "twice");
  expect_corrupt ("nb_bitmaps mismatch", p_nb_mismatch, "nb_bitmaps 0");
  expect_corrupt ("nb_bitmaps huge", p_nb_huge, "nb_bitmaps 70000");
  expect_corrupt ("directory past EOF", p_dir_past_eof,
                  "past the end of the file");
  expect_corrupt ("directory unaligned", p_dir_unaligned,
                  "bitmap_directory_offset 600");
  expect_corrupt ("directory in cluster 0", p_dir_in_c0,
                  "bitmap_directory_offset 0");
  expect_corrupt ("directory size short", p_dir_size_short,
                  "bitmap_directory_size 88");
  expect_corrupt ("directory size long", p_dir_size_long,
                  "bitmap_directory_size 104");
  expect_corrupt ("table unaligned", p_tbl_unaligned,
                  "bitmap_table_offset 1032");
  expect_corrupt ("table past EOF", p_tbl_past_eof,
                  "past the end of the file");
  expect_corrupt ("granularity not power of 2", p_gran_not_pow2,
                  "granularity 1000");
  expect_corrupt ("granularity too small", p_gran_small, "granularity 256");
  expect_corrupt ("name size 0", p_name_zero, "name_size 0");
  expect_corrupt ("name size 1024", p_name_big, "name_size 1024");
  expect_corrupt ("duplicate names", p_name_dup, "\"b1\" is used twice");
  expect_corrupt ("NUL in name", p_name_nul, "NUL");
  expect_corrupt ("reserved flags", p_flags, "flags 0x8001");
  expect_corrupt ("table size mismatch", p_tsize, "bitmap_table_size 3");
  expect_corrupt ("extra data size", p_extra_odd, "extra_data_size 4");
  expect_corrupt ("extra data record", p_extra_bad_record,
                  "extra data record");
  expect_corrupt ("table overlaps directory", p_tbl_overlap_dir,
                  "overlaps");
  expect_corrupt ("tables overlap", p_tbl_overlap_tbl, "overlaps");
  expect_corrupt ("data clusters overlap", p_data_overlap, "overlaps");
  expect_corrupt ("data cluster past EOF", p_data_past_eof,
                  "past the end of the file");
  expect_corrupt ("table entry reserved bits", p_entry_reserved,
                  "reserved bits");
  expect_corrupt ("table entry offset and ALL_ONES", p_entry_both,
                  "ALL_ONES");
  expect_corrupt ("table entry high bits", p_entry_high, "reserved bits");
  expect_corrupt ("truncated", p_truncated, "past the end of the file");
  expect_corrupt ("tiny", p_tiny, "too small");
  expect_corrupt ("disk_size huge", p_disk_huge, "disk_size");
  expect_corrupt ("end marker length", p_end_len, "has length 8");
  expect_corrupt ("different disk sizes", p_disk_differs,
                  "differs from bitmap \"b1\"'s disk_size 8388608");
  expect_corrupt ("table offset without a table", p_empty_table_offset,
                  "bitmap_table_offset 1024 with bitmap_table_size 0");

  expect_valid ("non-zero padding", p_padding, c_padding);
  expect_valid ("repeated unknown extension", p_repeated_unknown,
                c_repeated_unknown);
  expect_valid ("undefined feature name entries", p_odd_feature_names,
                c_odd_feature_names);
  expect_valid ("partial cluster at the end", p_partial_tail,
                c_partial_tail);
  test_partial_tail_leak ();
  test_zero_disk ();

  printf ("all QDB unit tests passed (%d errors reported as expected)\n",
          nr_errors);
  return 0;
}
