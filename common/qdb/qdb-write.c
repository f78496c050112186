/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Writing: a whole new file from the model (qdb_write), and the two
 * in-place changes the spec allows a tracker (giving table entries
 * data clusters, clearing unknown autoclear bits).
 *
 * Notes on the design.  qdb_write lays the file out as
 * docs/specs/qdb.txt "Layout written by qad-img" says: cluster 0, the
 * region map if any, the directory, then per bitmap its table and its
 * data clusters.  Unknown header extensions, extra data records, bytes
 * between QDB_HEADER_LENGTH and header_length and compatible feature
 * bits are kept; unknown autoclear bits are cleared, since they mark
 * data whose consistency this program cannot maintain.  The header is
 * written last, after a sync, so a crash while creating a file leaves
 * one that is refused (bad magic), never one that parses with garbage
 * behind it.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb-layout.h"
#include "qdb.h"
#include "rounding.h"

/* Are the valid bits of data cluster K all SET (v=1) or all clear? */
static bool
cluster_uniform (const struct qdb_file *qdb, const struct qdb_bitmap *bm,
                 uint64_t k, bool v)
{
  uint64_t bits_per_cluster = (uint64_t) qdb->cluster_size * 8;
  uint64_t first = k * bits_per_cluster;
  uint64_t last = first + bits_per_cluster - 1;
  const uint8_t *p = bm->bits + k * qdb->cluster_size;
  size_t i;

  if (v) {
    if (last >= bm->nr_granules)
      last = bm->nr_granules - 1;
    return bits_all_set (bm->bits, first, last + 1);
  }
  for (i = 0; i < qdb->cluster_size; ++i)
    if (p[i])
      return false;
  return true;
}

/* Every bitmap has its bits, and the directory and cluster 0 fit. */
static int
check_writable (struct qdb_io *io, const struct qdb_file *qdb,
                uint64_t *dir_size)
{
  uint64_t need;
  size_t i;

  *dir_size = 0;
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];

    if (!bm->bits) {
      qad_error ("%s: internal error: bitmap \"%s\" bits not loaded",
                 io->name, bm->name);
      errno = EINVAL;
      return -1;
    }
    *dir_size += qdb_dir_entry_size (bm->extra_data_size, bm->name_size);
  }
  if (*dir_size > QDB_MAX_DIRECTORY_SIZE) {
    qad_error ("%s: bitmap directory would be %" PRIu64 " bytes "
               "(at most %d)", io->name, *dir_size, QDB_MAX_DIRECTORY_SIZE);
    errno = EFBIG;
    return -1;
  }
  need = qdb_header_bytes (qdb);
  if (need > qdb->cluster_size) {
    qad_error ("%s: header and extensions (%" PRIu64 " bytes) do not fit "
               "in cluster 0 (cluster_size %" PRIu32 ")",
               io->name, need, qdb->cluster_size);
    errno = EFBIG;
    return -1;
  }
  return 0;
}

static uint64_t
table_bytes (const struct qdb_file *qdb, const struct qdb_bitmap *bm)
{
  return ROUND_UP ((uint64_t) bm->table_size * QDB_TABLE_ENTRY_SIZE,
                   qdb->cluster_size);
}

/* Place BM's table at *NEXT and its data clusters after it.  Without
 * ALLOCATE_ALL, uniform clusters get entry 0 or ALL_ONES instead.
 */
static void
lay_out_bitmap (struct qdb_file *qdb, struct qdb_bitmap *bm,
                bool allocate_all, uint64_t *next)
{
  uint64_t k;

  if (bm->table_size == 0) {
    bm->table_offset = 0;
    return;
  }
  bm->table_offset = *next;
  *next += table_bytes (qdb, bm);
  for (k = 0; k < bm->table_size; ++k) {
    if (!allocate_all && cluster_uniform (qdb, bm, k, false))
      bm->table[k] = 0;
    else if (!allocate_all && cluster_uniform (qdb, bm, k, true))
      bm->table[k] = QDB_ENTRY_ALL_ONES;
    else {
      bm->table[k] = *next;
      *next += qdb->cluster_size;
    }
  }
}

/* BM's data clusters, then its table. */
static int
write_bitmap (struct qdb_io *io, const struct qdb_file *qdb,
              const struct qdb_bitmap *bm)
{
  const uint64_t cs = qdb->cluster_size;
  const uint64_t tlen = table_bytes (qdb, bm);
  CLEANUP_FREE uint8_t *tbl = NULL;
  uint64_t k;

  if (bm->table_size == 0)
    return 0;
  for (k = 0; k < bm->table_size; ++k) {
    uint64_t doff = bm->table[k] & QDB_ENTRY_OFFSET_MASK;
    if (doff && qdb_io_write (io, bm->bits + k * cs, cs, doff,
                              "a bitmap data cluster") == -1)
      return -1;
  }
  tbl = calloc (1, tlen);
  if (!tbl) {
    qad_error ("%s: calloc: %m", io->name);
    return -1;
  }
  for (k = 0; k < bm->table_size; ++k)
    store_be64 (tbl + k * QDB_TABLE_ENTRY_SIZE, bm->table[k]);
  return qdb_io_write (io, tbl, tlen, bm->table_offset, "a bitmap table");
}

/* A zero-padded buffer of whole clusters, serialized by FN. */
static int
write_clusters (struct qdb_io *io, const struct qdb_file *qdb,
                uint64_t len, uint64_t offset, const char *what,
                void (*fn) (const struct qdb_file *, uint8_t *))
{
  CLEANUP_FREE uint8_t *buf = NULL;

  len = ROUND_UP (len, qdb->cluster_size);
  buf = calloc (1, len);
  if (!buf) {
    qad_error ("%s: calloc: %m", io->name);
    return -1;
  }
  fn (qdb, buf);
  return qdb_io_write (io, buf, len, offset, what);
}

int
qdb_write (struct qdb_io *io, struct qdb_file *qdb, bool allocate_all)
{
  const uint64_t cs = qdb->cluster_size;
  uint64_t dir_size, next = cs;
  size_t i;

  if (check_writable (io, qdb, &dir_size) == -1)
    return -1;
  qdb->autoclear &= QDB_AUTOCLEAR_KNOWN;

  if (qdb->region_size) {
    if (qdb_region_map_write (io, qdb, &next) == -1)
      return -1;
    qdb->incompat |= QDB_INCOMPAT_REGION_MAP;
  }
  else
    qdb->incompat &= ~QDB_INCOMPAT_REGION_MAP;
  qdb->dir_offset = qdb->nr_bitmaps ? next : 0;
  qdb->dir_size = dir_size;
  next += ROUND_UP (dir_size, cs);
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    lay_out_bitmap (qdb, &qdb->bitmaps[i], allocate_all, &next);

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (write_bitmap (io, qdb, &qdb->bitmaps[i]) == -1)
      return -1;
  if (qdb->nr_bitmaps &&
      write_clusters (io, qdb, dir_size, qdb->dir_offset,
                      "the bitmap directory", qdb_directory_serialize) == -1)
    return -1;
  if (qdb_io_flush (io) == -1 ||
      write_clusters (io, qdb, cs, 0, "the header",
                      qdb_header_serialize) == -1 ||
      qdb_io_flush (io) == -1)
    return -1;
  qdb->file_size = io->size;
  qdb->leaked_clusters = 0;
  return 0;
}

int
qdb_allocate_all (struct qdb_io *io, struct qdb_file *qdb,
                  struct qdb_bitmap *bm)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE uint64_t *newtab = NULL;
  uint64_t k, next, changed = 0;
  uint8_t e[QDB_TABLE_ENTRY_SIZE];

  if (!bm->bits) {
    qad_error ("%s: internal error: bitmap \"%s\" bits not loaded",
               io->name, bm->name);
    errno = EINVAL;
    return -1;
  }
  newtab = malloc ((bm->table_size ? bm->table_size : 1) * sizeof *newtab);
  if (!newtab) {
    qad_error ("%s: malloc: %m", io->name);
    return -1;
  }
  memcpy (newtab, bm->table, bm->table_size * sizeof *newtab);
  next = ROUND_UP (io->size, cs);
  for (k = 0; k < bm->table_size; ++k) {
    if (bm->table[k] != 0)
      continue;
    if (qdb_io_write (io, bm->bits + k * cs, cs, next,
                      "a new bitmap data cluster") == -1)
      return -1;
    newtab[k] = next;
    next += cs;
    changed++;
  }
  if (changed == 0)
    return 0;
  /* The clusters must be durable before the table points at them. */
  if (qdb_io_flush (io) == -1)
    return -1;
  for (k = 0; k < bm->table_size; ++k) {
    if (newtab[k] == bm->table[k])
      continue;
    store_be64 (e, newtab[k]);
    if (qdb_io_write (io, e, sizeof e,
                      bm->table_offset + k * QDB_TABLE_ENTRY_SIZE,
                      "a bitmap table entry") == -1)
      return -1;
  }
  if (qdb_io_flush (io) == -1)
    return -1;
  memcpy (bm->table, newtab, bm->table_size * sizeof *newtab);
  qdb->file_size = io->size;
  return 0;
}

int
qdb_clear_unknown_autoclear (struct qdb_io *io, struct qdb_file *qdb)
{
  uint8_t v[sizeof qdb->autoclear];

  if ((qdb->autoclear & ~QDB_AUTOCLEAR_KNOWN) == 0)
    return 0;
  qdb->autoclear &= QDB_AUTOCLEAR_KNOWN;
  store_be64 (v, qdb->autoclear);
  if (qdb_io_write (io, v, sizeof v, QDB_HDR_AUTOCLEAR,
                    "autoclear_features") == -1 ||
      qdb_io_flush (io) == -1)
    return -1;
  return 0;
}
