/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The export "dirty-bitmap:NAME": a read-only view of the same disk
 * whose base:allocation extents are bitmap NAME: data (0) for dirty
 * granules, or zero (ZERO without HOLE) where a dirty range is known
 * to read as zeroes (the plugin's extents; a frozen view's copies in
 * the scratch file), and HOLE (without ZERO) for clean ones.  The view
 * of a frozen bitmap reads the disk as of the freeze (control.c).
 *
 * Lock order: only the tracker's lock is taken here, and nothing is
 * called with it held but lookups in the model.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "dirty-bitmap.h"
#include "lsb-bits.h"
#include "minmax.h"

/* One export per bitmap, after the plugin's own. */
int
view_list_exports (struct nbdkit_exports *exports)
{
  size_t i;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&tracker.lock);
  for (i = 0; tracker.qdb && i < tracker.qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &tracker.qdb->bitmaps[i];
    CLEANUP_FREE char *name = NULL, *desc = NULL;

    if (asprintf (&name, VIEW_PREFIX "%s", bm->name) == -1 ||
        asprintf (&desc, "dirty bitmap %s (%s, granularity %" PRIu64 "): "
                  "read-only view, extents show dirty granules as data",
                  bm->name, bm->flags & QDB_FLAG_ENABLED ? "enabled"
                  : "disabled", bm->granularity) == -1) {
      nbdkit_error ("asprintf: %m");
      return -1;
    }
    if (nbdkit_add_export (exports, name, desc) == -1)
      return -1;
  }
  return 0;
}

/* At open: does bitmap NAME (of export EXPORTNAME) exist? */
int
view_check_name (const char *name, const char *exportname)
{
  bool found;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&tracker.lock);
    found = qdb_find_bitmap (tracker.qdb, name) != NULL;
  }
  if (!found) {
    nbdkit_error ("%s: no bitmap named \"%s\" (export name \"%s\")",
                  qdb_path, name, exportname);
    return -1;
  }
  return 0;
}

/* A read of the view: through the freeze when the bitmap is frozen. */
int
view_pread (nbdkit_next *next, const char *view, void *buf, uint32_t count,
            uint64_t offset, uint32_t flags, int *err)
{
  struct qdb_freeze *fz;
  int r;

  qdb_tracker_begin_io (&tracker);
  fz = find_freeze (view);
  if (fz)
    r = qdb_freeze_read (fz, buf, count, offset, read_next, next, err);
  else
    r = next->pread (next, buf, count, offset, flags, err);
  qdb_tracker_end_io (&tracker);
  return r;
}

/* The run of granules of view bitmap NAME that starts at OFF and are
 * all dirty or all clean, cut at END; its granularity in *GRAN.
 */
static int
view_run (const char *name, uint64_t off, uint64_t end, uint64_t *run_end,
          bool *dirty, uint64_t *gran, int *err)
{
  const struct qdb_bitmap *bm;
  uint64_t n;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&tracker.lock);
  bm = qdb_find_bitmap (tracker.qdb, name);
  if (!bm) {
    nbdkit_error ("%s: bitmap \"%s\" was removed while its view is open",
                  qdb_path, name);
    *err = ENOENT;
    return -1;
  }
  n = off / bm->granularity;
  *run_end = MIN ((n + bits_run (bm->bits, n, bm->nr_granules, dirty)) *
                  bm->granularity, end);
  *gran = bm->granularity;
  return 0;
}

/* A dirty run [off, end) of a view: zero (NBD's type 2, so that a copy
 * can write zeroes cheaply) where it is known to read as zeroes, data
 * elsewhere.  Known means: the plugin's extents say zero, or, for a
 * frozen view's copied granules, the copy in the scratch file is all
 * zero.  A plugin that cannot tell gets data.
 */
static int
add_dirty_extents (nbdkit_next *next, struct qdb_freeze *fz, uint64_t gran,
                   uint64_t off, uint64_t end,
                   struct nbdkit_extents *extents, int *err)
{
  struct nbdkit_extents *disk = NULL;
  size_t i = 0, n = 0;
  int r = -1;

  if (fz)
    qdb_freeze_hold (fz);
  if (next->can_extents (next) == 1) {
    disk = nbdkit_extents_full (next, end - off, off, 0, err);
    if (!disk)
      goto out;
    n = nbdkit_extents_count (disk);
  }
  while (off < end) {
    /* A frozen view decides granule by granule (copied or not). */
    uint64_t piece_end = fz ? MIN ((off / gran + 1) * gran, end) : end;
    uint32_t type = 0;

    if (fz && qdb_freeze_is_copied (fz, off)) {
      int z = qdb_freeze_copy_is_zero (fz, off, piece_end - off, err);
      if (z == -1)
        goto out;
      type = z ? NBDKIT_EXTENT_ZERO : 0;
    }
    else {
      struct nbdkit_extent e = { .length = 0 };

      for (; i < n; ++i) {
        e = nbdkit_get_extent (disk, i);
        if (e.offset + e.length > off)
          break;
      }
      if (i < n && e.offset <= off) {
        piece_end = MIN (piece_end, e.offset + e.length);
        type = e.type & NBDKIT_EXTENT_ZERO ? NBDKIT_EXTENT_ZERO : 0;
      }
    }
    if (nbdkit_add_extent (extents, off, piece_end - off, type) == -1) {
      *err = errno;
      goto out;
    }
    off = piece_end;
  }
  r = 0;
 out:
  if (fz)
    qdb_freeze_unhold (fz);
  if (disk)
    nbdkit_extents_free (disk);
  return r;
}

/* The extents of view VIEW: the bitmap's runs, dirty ones refined. */
int
view_extents (nbdkit_next *next, const char *view, uint32_t count,
              uint64_t offset, uint32_t flags,
              struct nbdkit_extents *extents, int *err)
{
  const uint64_t end = MIN (offset + count, disk_size);
  uint64_t off, run_end = end, gran;
  bool dirty;
  int r = 0;

  qdb_tracker_begin_io (&tracker);      /* the freezes stay as they are */
  for (off = offset; off < end && r == 0; off = run_end) {
    r = view_run (view, off, end, &run_end, &dirty, &gran, err);
    if (r == 0 && dirty)
      r = add_dirty_extents (next, find_freeze (view), gran, off,
                             run_end, extents, err);
    else if (r == 0 && nbdkit_add_extent (extents, off, run_end - off,
                                          NBDKIT_EXTENT_HOLE) == -1) {
      *err = errno;
      r = -1;
    }
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  qdb_tracker_end_io (&tracker);
  return r;
}
