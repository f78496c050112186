/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The in-memory model of a QDB file: create and free it, add, find,
 * remove, clear and merge bitmaps, count their dirty granules.  No I/O
 * here.  The rules of the format that the model enforces on additions
 * (names, granularity, one disk size per file) are the same ones
 * qdb_read enforces on files.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ispowerof2.h"
#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb-layout.h"
#include "qdb.h"
#include "rounding.h"
#include "vector.h"

/* Loading more than this many bytes of bits for one bitmap is refused
 * (a 64 TiB disk at 64 KiB granularity needs 128 MiB).
 */
#define QDB_MAX_BITS_IN_MEMORY (UINT64_C (1) << 30)

void
qdb_free_bitmap (struct qdb_bitmap *bm)
{
  free (bm->name);
  free (bm->table);
  free (bm->extra_data);
  free (bm->bits);
}

void
qdb_free (struct qdb_file *qdb)
{
  size_t i;

  if (!qdb)
    return;
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    qdb_free_bitmap (&qdb->bitmaps[i]);
  free (qdb->bitmaps);
  for (i = 0; i < qdb->exts.len; ++i)
    free (qdb->exts.ptr[i].data);
  qdb_record_vector_reset (&qdb->exts);
  free (qdb->feature_names);
  free (qdb->header_tail);
  free (qdb);
}

struct qdb_file *
qdb_discard (struct qdb_file *qdb)
{
  int saved = errno;

  qdb_free (qdb);
  errno = saved;
  return NULL;
}

struct qdb_file *
qdb_new (const char *name, unsigned cluster_bits)
{
  struct qdb_file *qdb;

  if (cluster_bits < QDB_MIN_CLUSTER_BITS ||
      cluster_bits > QDB_MAX_CLUSTER_BITS) {
    qad_error ("%s: cluster_bits %u out of range (%d..%d)",
               name, cluster_bits, QDB_MIN_CLUSTER_BITS, QDB_MAX_CLUSTER_BITS);
    errno = EINVAL;
    return NULL;
  }
  qdb = calloc (1, sizeof *qdb);
  if (!qdb) {
    qad_error ("%s: calloc: %m", name);
    return NULL;
  }
  qdb->name = name;
  qdb->cluster_bits = cluster_bits;
  qdb->cluster_size = UINT32_C (1) << cluster_bits;
  qdb->header_length = QDB_HEADER_LENGTH;
  return qdb;
}

bool
qdb_name_ok (const char *file, const char *name)
{
  size_t i, n = strlen (name);

  if (n < 1 || n > QDB_MAX_NAME_SIZE) {
    qad_error ("%s: bitmap name size %zu out of range (1..%d)",
               file, n, QDB_MAX_NAME_SIZE);
    return false;
  }
  for (i = 0; i < n; ++i) {
    unsigned char c = name[i];
    if (c <= ' ' || c >= 0x7f || c == '/' || c == ':') {
      qad_error ("%s: bitmap name \"%s\": character 0x%02x is not allowed "
                 "(printable ASCII except space, '/' and ':')",
                 file, name, c);
      return false;
    }
  }
  return true;
}

struct qdb_bitmap *
qdb_find_bitmap (struct qdb_file *qdb, const char *name)
{
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (strcmp (qdb->bitmaps[i].name, name) == 0)
      return &qdb->bitmaps[i];
  return NULL;
}

bool
qdb_bitmap_geometry (const struct qdb_file *qdb, uint64_t disk_size,
                     uint64_t granularity, uint64_t *nr_granules,
                     uint64_t *table_size)
{
  uint64_t bits_per_cluster = (uint64_t) qdb->cluster_size * 8;

  *nr_granules = div_round_up (disk_size, granularity);
  *table_size = div_round_up (*nr_granules, bits_per_cluster);
  return *table_size <= UINT32_MAX;
}

int
qdb_alloc_bits (struct qdb_file *qdb, struct qdb_bitmap *bm)
{
  uint64_t len = (uint64_t) bm->table_size * qdb->cluster_size;

  if (len > QDB_MAX_BITS_IN_MEMORY) {
    qad_error ("%s: bitmap \"%s\": %" PRIu64 " bytes of bits is more than "
               "this implementation loads (%" PRIu64 "); use a larger "
               "granularity", qdb->name, bm->name, len,
               QDB_MAX_BITS_IN_MEMORY);
    errno = ENOMEM;
    return -1;
  }
  free (bm->bits);
  bm->bits = calloc (len ? len : 1, 1);
  if (!bm->bits) {
    qad_error ("%s: bitmap \"%s\": calloc: %m", qdb->name, bm->name);
    return -1;
  }
  bm->bits_len = len;
  return 0;
}

int
qdb_add_bitmap (struct qdb_file *qdb, const char *name,
                uint64_t granularity, uint64_t disk_size, uint16_t flags)
{
  struct qdb_bitmap *bms, *bm;
  uint64_t nr_granules, table_size;

  if (!qdb_name_ok (qdb->name, name)) {
    errno = EINVAL;
    return -1;
  }
  if (qdb_find_bitmap (qdb, name)) {
    qad_error ("%s: bitmap \"%s\" already exists", qdb->name, name);
    errno = EEXIST;
    return -1;
  }
  if (qdb->nr_bitmaps >= QDB_MAX_BITMAPS) {
    qad_error ("%s: too many bitmaps (at most %d)", qdb->name,
               QDB_MAX_BITMAPS);
    errno = ENOSPC;
    return -1;
  }
  if (!is_power_of_2 (granularity) || granularity < QDB_MIN_GRANULARITY ||
      granularity > QDB_MAX_GRANULARITY) {
    qad_error ("%s: bitmap \"%s\": granularity %" PRIu64 " is not a power "
               "of 2 between %d and %" PRIu64, qdb->name, name, granularity,
               QDB_MIN_GRANULARITY, QDB_MAX_GRANULARITY);
    errno = EINVAL;
    return -1;
  }
  if (qdb->nr_bitmaps > 0 && disk_size != qdb->bitmaps[0].disk_size) {
    qad_error ("%s: bitmap \"%s\": disk size %" PRIu64 " differs from "
               "the disk size of the file's other bitmaps (%" PRIu64 ")",
               qdb->name, name, disk_size, qdb->bitmaps[0].disk_size);
    errno = EINVAL;
    return -1;
  }
  if (disk_size > QDB_MAX_DISK_SIZE ||
      !qdb_bitmap_geometry (qdb, disk_size, granularity, &nr_granules,
                            &table_size)) {
    qad_error ("%s: bitmap \"%s\": disk size %" PRIu64 " too large for "
               "granularity %" PRIu64, qdb->name, name, disk_size,
               granularity);
    errno = EFBIG;
    return -1;
  }
  if (flags & ~QDB_FLAGS_KNOWN) {
    qad_error ("%s: bitmap \"%s\": unknown flags 0x%x", qdb->name, name,
               flags);
    errno = EINVAL;
    return -1;
  }

  bms = vector_grow (qdb->bitmaps, qdb->nr_bitmaps, &qdb->bitmaps_cap, 1,
                     sizeof *bms);
  if (!bms) {
    qad_error ("%s: realloc: %m", qdb->name);
    return -1;
  }
  qdb->bitmaps = bms;
  bm = &bms[qdb->nr_bitmaps];
  memset (bm, 0, sizeof *bm);
  bm->name = strdup (name);
  bm->name_size = strlen (name);
  bm->flags = flags;
  bm->granularity = granularity;
  bm->disk_size = disk_size;
  bm->nr_granules = nr_granules;
  bm->table_size = table_size;
  bm->table = calloc (table_size ? table_size : 1, sizeof (uint64_t));
  if (!bm->name || !bm->table || qdb_alloc_bits (qdb, bm) == -1) {
    if (!bm->name || !bm->table)
      qad_error ("%s: calloc: %m", qdb->name);
    qdb_free_bitmap (bm);
    return -1;
  }
  return qdb->nr_bitmaps++;
}

int
qdb_remove_bitmap (struct qdb_file *qdb, size_t i)
{
  if (i >= qdb->nr_bitmaps) {
    errno = EINVAL;
    return -1;
  }
  qdb_free_bitmap (&qdb->bitmaps[i]);
  memmove (&qdb->bitmaps[i], &qdb->bitmaps[i + 1],
           (qdb->nr_bitmaps - i - 1) * sizeof qdb->bitmaps[0]);
  qdb->nr_bitmaps--;
  return 0;
}

int
qdb_merge_bitmap (struct qdb_file *qdb, const struct qdb_bitmap *src,
                  struct qdb_bitmap *dst)
{
  uint64_t n;

  if (src->disk_size != dst->disk_size) {
    qad_error ("%s: cannot merge \"%s\" (disk size %" PRIu64 ") into \"%s\" "
               "(disk size %" PRIu64 ")", qdb->name, src->name,
               src->disk_size, dst->name, dst->disk_size);
    errno = EINVAL;
    return -1;
  }
  if (!src->bits || !dst->bits) {
    qad_error ("%s: internal error: merge without the bits loaded",
               qdb->name);
    errno = EINVAL;
    return -1;
  }
  for (n = 0; n < src->nr_granules; ) {
    uint64_t run = bits_run (src->bits, n, src->nr_granules, NULL);
    if (bit_test (src->bits, n)) {
      /* Bytes [start, end) of the disk are dirty in SRC; the last
       * granule may be short.
       */
      uint64_t start = n * src->granularity;
      uint64_t end = (n + run) * src->granularity;
      if (end > src->disk_size)
        end = src->disk_size;
      bits_set_range (dst->bits, start / dst->granularity,
                      (end - 1) / dst->granularity + 1);
    }
    n += run;
  }
  return 0;
}

void
qdb_clear_bitmap (struct qdb_bitmap *bm)
{
  if (bm->bits)
    memset (bm->bits, 0, bm->bits_len);
  bm->flags &= ~QDB_FLAG_IN_USE;
}

void
qdb_set_all_dirty (struct qdb_bitmap *bm)
{
  qdb_clear_bitmap (bm);
  if (bm->bits && bm->nr_granules > 0)
    bits_set_range (bm->bits, 0, bm->nr_granules);
}

void
qdb_describe_features (const struct qdb_file *qdb, int type, uint64_t bits,
                       char *buf, size_t len)
{
  size_t used = 0;
  unsigned b;
  size_t i;

  buf[0] = '\0';
  for (b = 0; b < 64; ++b) {
    const char *name = NULL;
    int r;

    if (!(bits & (UINT64_C (1) << b)))
      continue;
    for (i = 0; i < qdb->nr_feature_names; ++i)
      if (qdb->feature_names[i].type == type &&
          qdb->feature_names[i].bit == b)
        name = qdb->feature_names[i].name;
    r = snprintf (buf + used, len - used, "%sbit %u%s%s%s",
                  used ? ", " : "", b,
                  name ? " (" : "", name ? name : "", name ? ")" : "");
    if (r < 0 || (size_t) r >= len - used)
      return;
    used += r;
  }
}

uint64_t
qdb_dirty_granules (const struct qdb_bitmap *bm)
{
  uint64_t n = 0;
  size_t i, len = div_round_up (bm->nr_granules, 8);

  for (i = 0; i < len; ++i)
    n += __builtin_popcount (bm->bits[i]);
  return n;
}

uint64_t
qdb_dirty_bytes (const struct qdb_bitmap *bm)
{
  uint64_t n = qdb_dirty_granules (bm) * bm->granularity;

  /* The last granule may be short. */
  if (bm->nr_granules > 0 &&
      bit_test (bm->bits, bm->nr_granules - 1) &&
      bm->disk_size % bm->granularity)
    n -= bm->granularity - bm->disk_size % bm->granularity;
  return n;
}
