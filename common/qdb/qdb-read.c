/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Reading and validating a whole file into the model: header and
 * directory (qdb-header.c, qdb-directory.c), then the bitmap tables,
 * the overlap check, and on request the bits.
 *
 * Notes on the design.  Everything is validated before it is used:
 * every size and offset read from the file is combined with checked
 * arithmetic, every structure is checked to lie inside the file and
 * outside cluster 0, and all structures are checked to be pairwise
 * disjoint (sorted regions).  What the tables and bits will take in
 * memory is checked against qad_limits before any of it is allocated.
 * No assert depends on file contents.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "lsb-bits.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qdb-internal.h"
#include "qdb-layout.h"
#include "qdb.h"
#include "rounding.h"

enum region_kind { R_HEADER, R_DIRECTORY, R_TABLE, R_DATA, R_REGION_MAP };

struct region {
  uint64_t start, end;          /* [start, end), cluster-aligned */
  enum region_kind kind;
  size_t bitmap;
  uint64_t entry;
};

static int
compare_regions (const void *a, const void *b)
{
  const struct region *ra = a, *rb = b;

  return ra->start < rb->start ? -1 : ra->start > rb->start;
}

static void
describe_region (const struct qdb_file *qdb, const struct region *r,
                 char *buf, size_t len)
{
  switch (r->kind) {
  case R_HEADER:
    snprintf (buf, len, "the header (cluster 0)");
    break;
  case R_DIRECTORY:
    snprintf (buf, len, "the bitmap directory at offset %" PRIu64, r->start);
    break;
  case R_TABLE:
    snprintf (buf, len, "bitmap \"%s\"'s table at offset %" PRIu64,
              qdb->bitmaps[r->bitmap].name, r->start);
    break;
  case R_DATA:
    snprintf (buf, len, "bitmap \"%s\"'s data cluster %" PRIu64
              " at offset %" PRIu64,
              qdb->bitmaps[r->bitmap].name, r->entry, r->start);
    break;
  case R_REGION_MAP:
    snprintf (buf, len, "the region map at offset %" PRIu64, r->start);
    break;
  }
}

/* What the tables (each entry: the host copy, the overlap check's
 * region) and, with LOAD_BITS, the bits of every bitmap will take,
 * against qad_limits.max_qdb_bytes: refused before any of it is
 * allocated, whatever sizes the directory declares.
 */
static int
check_memory (struct qdb_file *qdb, bool load_bits)
{
  const uint64_t per_entry = sizeof (uint64_t) + sizeof (struct region);
  uint64_t total = 0, t;
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];

    /* table_size < 2^32 and both factors < 2^32: no overflow. */
    t = (uint64_t) bm->table_size * per_entry;
    if (load_bits)
      t += (uint64_t) bm->table_size * qdb->cluster_size;
    if (ADD_OVERFLOW (total, t, &total) || total > qad_limits.max_qdb_bytes) {
      qad_error ("%s: bitmap \"%s\" (bitmap_table_size %" PRIu32
                 ", cluster_size %" PRIu32 ") brings the memory the file "
                 "needs past the limit of %" PRIu64 " bytes (raise it "
                 "with max-qdb-size=)", qdb->name, bm->name,
                 bm->table_size, qdb->cluster_size,
                 qad_limits.max_qdb_bytes);
      errno = EFBIG;
      return -1;
    }
  }
  return 0;
}

/* Entry K of BM's table: an offset, ALL_ONES or 0, never both an
 * offset and ALL_ONES, no reserved bit; a data cluster lies whole
 * inside the file.
 */
static int
check_table_entry (const struct qdb_file *qdb, const struct qdb_bitmap *bm,
                   uint64_t k, uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;
  const uint64_t e = bm->table[k];
  const uint64_t off = e & QDB_ENTRY_OFFSET_MASK;

  if (e & QDB_ENTRY_RESERVED_MASK) {
    qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 " = 0x%016"
               PRIx64 " has reserved bits set (or an unaligned offset)",
               qdb->name, bm->name, k, e);
    return -1;
  }
  if (off == 0)
    return 0;
  if (e & QDB_ENTRY_ALL_ONES) {
    qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 " = 0x%016"
               PRIx64 " has both an offset and ALL_ONES",
               qdb->name, bm->name, k, e);
    return -1;
  }
  if (!IS_ALIGNED (off, cs) || off < cs ||
      !range_within (off, cs, file_size)) {
    qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 ": data "
               "cluster offset %" PRIu64 " is not cluster-aligned, is "
               "in cluster 0 or lies past the end of the file (%"
               PRIu64 " bytes, cluster_size %" PRIu64 ")",
               qdb->name, bm->name, k, off, file_size, cs);
    return -1;
  }
  return 0;
}

static int
read_tables (struct qdb_io *io, struct qdb_file *qdb, uint64_t file_size)
{
  size_t i;
  uint64_t k;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    const size_t n = bm->table_size;
    CLEANUP_FREE uint8_t *raw = NULL;

    bm->table = calloc (n ? n : 1, sizeof (uint64_t));
    raw = malloc (n ? n * QDB_TABLE_ENTRY_SIZE : 1);
    if (!bm->table || !raw) {
      qad_error ("%s: bitmap \"%s\": table of %zu entries: %m",
                 qdb->name, bm->name, n);
      errno = ENOMEM;
      return -1;
    }
    if (n && qdb_io_read (io, raw, n * QDB_TABLE_ENTRY_SIZE,
                          bm->table_offset, "a bitmap table") == -1)
      return -1;
    for (k = 0; k < n; ++k) {
      bm->table[k] = load_be64 (raw + k * QDB_TABLE_ENTRY_SIZE);
      if (check_table_entry (qdb, bm, k, file_size) == -1)
        return -1;
    }
  }
  return 0;
}

static int
check_overlaps (struct qdb_file *qdb, uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE struct region *r = NULL;
  size_t n = 0, max = 3, i;
  uint64_t k, covered = 0, file_clusters;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    max += 1;
    for (k = 0; k < qdb->bitmaps[i].table_size; ++k)
      if (qdb->bitmaps[i].table[k] & QDB_ENTRY_OFFSET_MASK)
        max++;
  }
  r = malloc (max * sizeof *r);
  if (!r) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  /* Every structure takes whole clusters (offsets were checked
   * cluster-aligned and inside the file, so no sum overflows).
   */
#define REGION(start, bytes, kind, bitmap, entry) \
  (struct region) { (start), (start) + ROUND_UP ((uint64_t) (bytes), cs), \
                    (kind), (bitmap), (entry) }
  r[n++] = REGION (0, cs, R_HEADER, 0, 0);
  if (qdb->region_size)
    r[n++] = REGION (qdb->region_map_offset, qdb->region_map_size,
                     R_REGION_MAP, 0, 0);
  if (qdb->dir_size)
    r[n++] = REGION (qdb->dir_offset, qdb->dir_size, R_DIRECTORY, 0, 0);
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];

    if (bm->table_size)
      r[n++] = REGION (bm->table_offset,
                       (uint64_t) bm->table_size * QDB_TABLE_ENTRY_SIZE,
                       R_TABLE, i, 0);
    for (k = 0; k < bm->table_size; ++k) {
      uint64_t off = bm->table[k] & QDB_ENTRY_OFFSET_MASK;
      if (off)
        r[n++] = REGION (off, cs, R_DATA, i, k);
    }
  }
#undef REGION
  qsort (r, n, sizeof *r, compare_regions);
  for (i = 0; i < n; ++i) {
    if (i > 0 && r[i].start < r[i - 1].end) {
      char a[256], b[256];
      describe_region (qdb, &r[i - 1], a, sizeof a);
      describe_region (qdb, &r[i], b, sizeof b);
      qad_error ("%s: %s overlaps %s", qdb->name, a, b);
      errno = EINVAL;
      return -1;
    }
    covered += (r[i].end - r[i].start) / cs;
  }
  file_clusters = div_round_up (file_size, cs);
  qdb->leaked_clusters = file_clusters > covered ? file_clusters - covered : 0;
  return 0;
}

int
qdb_load_bits (struct qdb_io *io, struct qdb_file *qdb,
               struct qdb_bitmap *bm)
{
  const uint64_t cs = qdb->cluster_size;
  uint64_t k, n;

  if (qdb_alloc_bits (qdb, bm) == -1)
    return -1;
  for (k = 0; k < bm->table_size; ++k) {
    uint64_t e = bm->table[k];
    uint64_t off = e & QDB_ENTRY_OFFSET_MASK;
    uint8_t *p = bm->bits + k * cs;

    if (off) {
      if (qdb_io_read (io, p, cs, off, "a bitmap data cluster") == -1)
        return -1;
    }
    else if (e & QDB_ENTRY_ALL_ONES)
      memset (p, 0xff, cs);
  }
  /* Bits past nr_granules are ignored: keep them 0 in memory. */
  for (n = bm->nr_granules; n < bm->bits_len * 8 && (n & 7); ++n)
    bit_clear (bm->bits, n);
  if (n < bm->bits_len * 8)
    memset (bm->bits + (n >> 3), 0, bm->bits_len - (n >> 3));
  return 0;
}
struct qdb_file *
qdb_read (struct qdb_io *io, bool load_bits)
{
  struct qdb_file *qdb;
  uint32_t nb_bitmaps;
  size_t i;

  qdb = qdb_header_read (io, &nb_bitmaps);
  if (!qdb)
    return NULL;
  if (qdb_directory_read (io, qdb, nb_bitmaps) == -1 ||
      check_memory (qdb, load_bits) == -1)
    goto err;
  if (qdb_region_map_check (qdb, qdb->file_size) == -1 ||
      read_tables (io, qdb, qdb->file_size) == -1 ||
      check_overlaps (qdb, qdb->file_size) == -1) {
    errno = EINVAL;
    goto err;
  }
  if (load_bits) {
    for (i = 0; i < qdb->nr_bitmaps; ++i)
      if (qdb_load_bits (io, qdb, &qdb->bitmaps[i]) == -1)
        goto err;
    if (qdb->region_size && qdb_region_map_apply (io, qdb) == -1)
      goto err;
  }
  return qdb;

 err:
  return qdb_discard (qdb);
}
