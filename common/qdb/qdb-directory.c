/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The bitmap directory: where the header says it is, its entries
 * parsed into the model and serialized from it.
 *
 * Notes on the design.  Every entry is checked to lie inside
 * bitmap_directory_size before any of its fields is read, and every
 * field before it is used; entry sizes are computed in 64 bits from
 * fields of at most 32 bits, so they cannot overflow.  Reserved bytes
 * and padding are ignored here and written as zero by the serializer.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "ispowerof2.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb-layout.h"
#include "qdb.h"
#include "rounding.h"

uint64_t
qdb_dir_entry_size (uint32_t extra_data_size, uint64_t name_size)
{
  return ROUND_UP ((uint64_t) QDB_DIR_ENTRY_FIXED + extra_data_size +
                   name_size, QDB_DIR_ENTRY_ALIGN);
}

/* Check that extra data is a well-formed sequence of typed records. */
static int
check_extra_data (struct qdb_file *qdb, size_t i, const uint8_t *p,
                  uint32_t size)
{
  uint64_t off, next;
  uint32_t type, len;

  for (off = 0; off < size; off = next) {
    switch (qdb_record_parse (p, off, size, &type, &len, &next)) {
    case -1:
      qad_error ("%s: directory entry %zu: extra data record at offset %"
                 PRIu64 " is truncated (extra_data_size %" PRIu32 ")",
                 qdb->name, i, off, size);
      return -1;
    case -2:
      qad_error ("%s: directory entry %zu: extra data record type 0x%08"
                 PRIx32 " length %" PRIu32 " runs past extra_data_size %"
                 PRIu32, qdb->name, i, type, len, size);
      return -1;
    }
  }
  return 0;
}

/* The name and extra data of entry I at E (already known to lie inside
 * the directory).
 */
static int
parse_name_and_extra (struct qdb_file *qdb, size_t i, const uint8_t *e,
                      uint16_t name_size, uint32_t extra)
{
  struct qdb_bitmap *bm = &qdb->bitmaps[i];
  size_t j;

  bm->name_size = name_size;
  bm->name = malloc (name_size + 1);
  if (!bm->name) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  memcpy (bm->name, e + QDB_DIR_ENTRY_FIXED + extra, name_size);
  bm->name[name_size] = '\0';
  if (memchr (bm->name, '\0', name_size)) {
    qad_error ("%s: directory entry %zu: name contains a NUL byte",
               qdb->name, i);
    return -1;
  }
  for (j = 0; j < i; ++j)
    if (strcmp (qdb->bitmaps[j].name, bm->name) == 0) {
      qad_error ("%s: directory entry %zu: bitmap name \"%s\" is used "
                 "twice", qdb->name, i, bm->name);
      return -1;
    }
  if (check_extra_data (qdb, i, e + QDB_DIR_ENTRY_FIXED, extra) == -1)
    return -1;
  bm->extra_data_size = extra;
  bm->extra_data = malloc (extra ? extra : 1);
  if (!bm->extra_data) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  memcpy (bm->extra_data, e + QDB_DIR_ENTRY_FIXED, extra);
  return 0;
}

/* Flags, granularity, disk size, table size and table placement of a
 * named bitmap.
 */
static int
check_geometry (struct qdb_file *qdb, struct qdb_bitmap *bm,
                uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;
  uint64_t nr_granules, table_size;

  if (bm->flags & ~QDB_FLAGS_KNOWN) {
    qad_error ("%s: bitmap \"%s\": flags 0x%04" PRIx16 " has reserved "
               "bits set (0x%04x)", qdb->name, bm->name, bm->flags,
               bm->flags & ~QDB_FLAGS_KNOWN);
    return -1;
  }
  if (!is_power_of_2 (bm->granularity) ||
      bm->granularity < QDB_MIN_GRANULARITY ||
      bm->granularity > QDB_MAX_GRANULARITY) {
    qad_error ("%s: bitmap \"%s\": granularity %" PRIu64 " is not a "
               "power of 2 between %d and %" PRIu64, qdb->name, bm->name,
               bm->granularity, QDB_MIN_GRANULARITY, QDB_MAX_GRANULARITY);
    return -1;
  }
  if (bm->disk_size > QDB_MAX_DISK_SIZE) {
    qad_error ("%s: bitmap \"%s\": disk_size %" PRIu64 " too large",
               qdb->name, bm->name, bm->disk_size);
    return -1;
  }
  if (bm != &qdb->bitmaps[0] && bm->disk_size != qdb->bitmaps[0].disk_size) {
    qad_error ("%s: bitmap \"%s\": disk_size %" PRIu64 " differs from "
               "bitmap \"%s\"'s disk_size %" PRIu64 " (every bitmap of a "
               "file describes the same disk)", qdb->name, bm->name,
               bm->disk_size, qdb->bitmaps[0].name,
               qdb->bitmaps[0].disk_size);
    return -1;
  }
  if (!qdb_bitmap_geometry (qdb, bm->disk_size, bm->granularity,
                            &nr_granules, &table_size) ||
      table_size != bm->table_size) {
    qad_error ("%s: bitmap \"%s\": bitmap_table_size %" PRIu32 " does not "
               "match disk_size %" PRIu64 ", granularity %" PRIu64
               " and cluster_size %" PRIu64 " (expected %" PRIu64 ")",
               qdb->name, bm->name, bm->table_size, bm->disk_size,
               bm->granularity, cs, table_size);
    return -1;
  }
  bm->nr_granules = nr_granules;
  if (bm->table_size == 0) {
    /* A disk of size 0: no table, so no offset either. */
    if (bm->table_offset != 0) {
      qad_error ("%s: bitmap \"%s\": bitmap_table_offset %" PRIu64
                 " with bitmap_table_size 0 (must be 0)",
                 qdb->name, bm->name, bm->table_offset);
      return -1;
    }
    return 0;
  }
  if (!IS_ALIGNED (bm->table_offset, cs) || bm->table_offset < cs) {
    qad_error ("%s: bitmap \"%s\": bitmap_table_offset %" PRIu64
               " is not a cluster-aligned offset past cluster 0 "
               "(cluster_size %" PRIu64 ")",
               qdb->name, bm->name, bm->table_offset, cs);
    return -1;
  }
  if (!range_within (bm->table_offset,
                     (uint64_t) bm->table_size * QDB_TABLE_ENTRY_SIZE,
                     file_size)) {
    qad_error ("%s: bitmap \"%s\": bitmap table at offset %" PRIu64
               " (%" PRIu32 " entries) lies past the end of the file "
               "(%" PRIu64 " bytes)", qdb->name, bm->name,
               bm->table_offset, bm->table_size, file_size);
    return -1;
  }
  return 0;
}

static int
parse_entries (struct qdb_file *qdb, const uint8_t *dir,
               uint32_t nb_bitmaps, uint64_t file_size)
{
  uint64_t pos = 0;
  size_t i;

  qdb->bitmaps = calloc (nb_bitmaps ? nb_bitmaps : 1, sizeof *qdb->bitmaps);
  if (!qdb->bitmaps) {
    qad_error ("%s: calloc: %m", qdb->name);
    return -1;
  }
  qdb->bitmaps_cap = nb_bitmaps ? nb_bitmaps : 1;

  for (i = 0; i < nb_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    const uint8_t *e = dir + pos;
    uint64_t entry_size;
    uint32_t extra;
    uint16_t name_size;

    if (!range_within (pos, QDB_DIR_ENTRY_FIXED, qdb->dir_size)) {
      qad_error ("%s: directory entry %zu at directory offset %" PRIu64
                 " is truncated (bitmap_directory_size %" PRIu32 ")",
                 qdb->name, i, pos, qdb->dir_size);
      return -1;
    }
    bm->table_offset = load_be64 (e + QDB_DIRENT_TABLE_OFFSET);
    bm->disk_size = load_be64 (e + QDB_DIRENT_DISK_SIZE);
    bm->table_size = load_be32 (e + QDB_DIRENT_TABLE_SIZE);
    bm->granularity = load_be32 (e + QDB_DIRENT_GRANULARITY);
    bm->flags = load_be16 (e + QDB_DIRENT_FLAGS);
    name_size = load_be16 (e + QDB_DIRENT_NAME_SIZE);
    extra = load_be32 (e + QDB_DIRENT_EXTRA_DATA_SIZE);
    qdb->nr_bitmaps = i + 1;    /* so that qdb_free frees it */

    if (name_size < 1 || name_size > QDB_MAX_NAME_SIZE) {
      qad_error ("%s: directory entry %zu: name_size %" PRIu16
                 " out of range (1..%d)", qdb->name, i, name_size,
                 QDB_MAX_NAME_SIZE);
      return -1;
    }
    if (extra % QDB_RECORD_ALIGN != 0 || extra > QDB_MAX_EXTRA_DATA_SIZE) {
      qad_error ("%s: directory entry %zu: extra_data_size %" PRIu32
                 " is not a multiple of %d at most %d", qdb->name, i,
                 extra, QDB_RECORD_ALIGN, QDB_MAX_EXTRA_DATA_SIZE);
      return -1;
    }
    entry_size = qdb_dir_entry_size (extra, name_size);
    if (!range_within (pos, entry_size, qdb->dir_size)) {
      qad_error ("%s: directory entry %zu (size %" PRIu64 ") runs past "
                 "bitmap_directory_size %" PRIu32,
                 qdb->name, i, entry_size, qdb->dir_size);
      return -1;
    }
    if (parse_name_and_extra (qdb, i, e, name_size, extra) == -1 ||
        check_geometry (qdb, bm, file_size) == -1)
      return -1;
    pos += entry_size;
  }
  if (pos != qdb->dir_size) {
    qad_error ("%s: bitmap_directory_size %" PRIu32 " does not match the "
               "%" PRIu32 " entries (%" PRIu64 " bytes)",
               qdb->name, qdb->dir_size, nb_bitmaps, pos);
    return -1;
  }
  return 0;
}

/* The header's nb_bitmaps, bitmap_directory_offset and _size. */
static int
check_placement (struct qdb_file *qdb, uint32_t nb_bitmaps,
                 uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;

  if (nb_bitmaps > QDB_MAX_BITMAPS) {
    qad_error ("%s: nb_bitmaps %" PRIu32 " out of range (at most %d)",
               qdb->name, nb_bitmaps, QDB_MAX_BITMAPS);
    return -1;
  }
  if ((nb_bitmaps == 0) != (qdb->dir_offset == 0) ||
      (nb_bitmaps == 0) != (qdb->dir_size == 0)) {
    qad_error ("%s: nb_bitmaps %" PRIu32 ", bitmap_directory_offset %"
               PRIu64 " and bitmap_directory_size %" PRIu32 " disagree "
               "(all zero or all non-zero)", qdb->name, nb_bitmaps,
               qdb->dir_offset, qdb->dir_size);
    return -1;
  }
  if (nb_bitmaps == 0)
    return 0;
  if (!IS_ALIGNED (qdb->dir_offset, cs) || qdb->dir_offset < cs) {
    qad_error ("%s: bitmap_directory_offset %" PRIu64 " is not a "
               "cluster-aligned offset past cluster 0 (cluster_size %"
               PRIu64 ")", qdb->name, qdb->dir_offset, cs);
    return -1;
  }
  if (qdb->dir_size > QDB_MAX_DIRECTORY_SIZE ||
      qdb->dir_size < (uint64_t) nb_bitmaps * QDB_DIR_ENTRY_FIXED) {
    qad_error ("%s: bitmap_directory_size %" PRIu32 " out of range "
               "(%" PRIu64 "..%d for %" PRIu32 " bitmaps)",
               qdb->name, qdb->dir_size,
               (uint64_t) nb_bitmaps * QDB_DIR_ENTRY_FIXED,
               QDB_MAX_DIRECTORY_SIZE, nb_bitmaps);
    return -1;
  }
  if (!range_within (qdb->dir_offset, qdb->dir_size, file_size)) {
    qad_error ("%s: bitmap directory at offset %" PRIu64 " (size %"
               PRIu32 ") lies past the end of the file (%" PRIu64
               " bytes)", qdb->name, qdb->dir_offset, qdb->dir_size,
               file_size);
    return -1;
  }
  return 0;
}

int
qdb_directory_read (struct qdb_io *io, struct qdb_file *qdb,
                    uint32_t nb_bitmaps)
{
  CLEANUP_FREE uint8_t *dir = NULL;

  if (check_placement (qdb, nb_bitmaps, io->size) == -1) {
    errno = EINVAL;
    return -1;
  }
  if (nb_bitmaps > 0) {
    dir = malloc (qdb->dir_size);
    if (!dir) {
      qad_error ("%s: malloc: %m", io->name);
      return -1;
    }
    if (qdb_io_read (io, dir, qdb->dir_size, qdb->dir_offset,
                     "the bitmap directory") == -1)
      return -1;
  }
  if (parse_entries (qdb, dir, nb_bitmaps, io->size) == -1) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

void
qdb_directory_serialize (const struct qdb_file *qdb, uint8_t *dir)
{
  uint64_t pos = 0;
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    uint8_t *e = dir + pos;

    store_be64 (e + QDB_DIRENT_TABLE_OFFSET, bm->table_offset);
    store_be64 (e + QDB_DIRENT_DISK_SIZE, bm->disk_size);
    store_be32 (e + QDB_DIRENT_TABLE_SIZE, bm->table_size);
    store_be32 (e + QDB_DIRENT_GRANULARITY, bm->granularity);
    store_be16 (e + QDB_DIRENT_FLAGS, bm->flags);
    store_be16 (e + QDB_DIRENT_NAME_SIZE, bm->name_size);
    store_be32 (e + QDB_DIRENT_EXTRA_DATA_SIZE, bm->extra_data_size);
    if (bm->extra_data_size)
      memcpy (e + QDB_DIR_ENTRY_FIXED, bm->extra_data, bm->extra_data_size);
    memcpy (e + QDB_DIR_ENTRY_FIXED + bm->extra_data_size, bm->name,
            bm->name_size);
    pos += qdb_dir_entry_size (bm->extra_data_size, bm->name_size);
  }
}
