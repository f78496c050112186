/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The region map (incompatible feature bit 0, docs/specs/qdb.txt
 * "Region map"): its checks, applying it to the loaded bitmaps, and
 * the all-clear map a writer lays out.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "ispowerof2.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb.h"
#include "rounding.h"

uint64_t
qdb_region_map_size (uint64_t disk_size, uint64_t region_size)
{
  uint64_t regions;

  if (region_size == 0)
    return 0;
  regions = disk_size / region_size + (disk_size % region_size != 0);
  return regions / 8 + 1;
}

/* The region map extension and the feature bit go together; the map
 * lies inside the file, cluster-aligned, and covers every bitmap.
 */
int
qdb_region_map_check (struct qdb_file *qdb, uint64_t file_size)
{
  const bool bit = qdb->incompat & QDB_INCOMPAT_REGION_MAP;
  size_t i;

  if (bit != (qdb->region_size != 0)) {
    qad_error ("%s: incompatible feature bit 0 (region map) is %s but the "
               "region map header extension is %s", qdb->name,
               bit ? "set" : "clear", qdb->region_size ? "present" : "absent");
    return -1;
  }
  if (!bit)
    return 0;
  if (!is_power_of_2 (qdb->region_size) ||
      qdb->region_size < QDB_MIN_REGION_SIZE ||
      qdb->region_size > QDB_MAX_REGION_SIZE) {
    qad_error ("%s: region map: region_size %" PRIu64 " is not a power of 2 "
               "from %" PRIu64 " to %" PRIu64, qdb->name, qdb->region_size,
               QDB_MIN_REGION_SIZE, QDB_MAX_REGION_SIZE);
    return -1;
  }
  if (qdb->region_map_size == 0 ||
      qdb->region_map_size > QDB_MAX_REGION_MAP_SIZE ||
      !IS_ALIGNED (qdb->region_map_offset, qdb->cluster_size) ||
      qdb->region_map_offset < qdb->cluster_size ||
      !range_within (qdb->region_map_offset,
                     ROUND_UP (qdb->region_map_size, qdb->cluster_size),
                     file_size)) {
    qad_error ("%s: region map: offset %" PRIu64 " size %" PRIu64 " is "
               "invalid (1..%d bytes in whole clusters inside the file of %"
               PRIu64 " bytes, not in cluster 0)", qdb->name,
               qdb->region_map_offset, qdb->region_map_size,
               QDB_MAX_REGION_MAP_SIZE, file_size);
    return -1;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb_region_map_size (qdb->bitmaps[i].disk_size, qdb->region_size)
        > qdb->region_map_size) {
      qad_error ("%s: region map: size %" PRIu64 " does not cover bitmap "
                 "\"%s\" (disk size %" PRIu64 ", region_size %" PRIu64 ")",
                 qdb->name, qdb->region_map_size, qdb->bitmaps[i].name,
                 qdb->bitmaps[i].disk_size, qdb->region_size);
      return -1;
    }
  return 0;
}

/* OR every marked region into every enabled bitmap. */
int
qdb_region_map_apply (struct qdb_io *io, struct qdb_file *qdb)
{
  CLEANUP_FREE uint8_t *map = malloc (qdb->region_map_size);
  size_t i;

  if (!map) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  if (qdb_io_read (io, map, qdb->region_map_size, qdb->region_map_offset,
                   "the region map") == -1)
    return -1;
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    uint64_t r, nr = qdb->region_map_size * 8, before;

    if (!(bm->flags & QDB_FLAG_ENABLED) || bm->nr_granules == 0)
      continue;
    before = qdb_dirty_granules (bm);
    for (r = 0; r < nr && r * qdb->region_size < bm->disk_size; ++r) {
      uint64_t end;
      if (!bit_test (map, r))
        continue;
      end = MIN (bm->disk_size, (r + 1) * qdb->region_size);
      bits_set_range (bm->bits, r * qdb->region_size / bm->granularity,
                      (end - 1) / bm->granularity + 1);
    }
    qdb->region_recovered += qdb_dirty_granules (bm) - before;
  }
  return 0;
}

int
qdb_region_map_write (struct qdb_io *io, struct qdb_file *qdb,
                      uint64_t *next)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE uint8_t *zeroes = NULL;
  uint64_t msize = 1, len;
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    msize = MAX (msize, qdb_region_map_size (qdb->bitmaps[i].disk_size,
                                             qdb->region_size));
  if (msize > QDB_MAX_REGION_MAP_SIZE) {
    qad_error ("%s: region map would be %" PRIu64 " bytes (at most %d): "
               "use larger regions", io->name, msize,
               QDB_MAX_REGION_MAP_SIZE);
    errno = EFBIG;
    return -1;
  }
  len = ROUND_UP (msize, cs);
  qdb->region_map_offset = *next;
  qdb->region_map_size = msize;
  *next += len;
  zeroes = calloc (1, len);
  if (!zeroes) {
    qad_error ("%s: calloc: %m", io->name);
    return -1;
  }
  return qdb_io_write (io, zeroes, len, qdb->region_map_offset,
                       "the region map");
}
