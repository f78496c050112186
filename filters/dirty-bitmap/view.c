/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The export "dirty-bitmap:NAME": a read-only view of the same disk
 * whose base:allocation extents are bitmap NAME, data (0) for dirty
 * granules and HOLE (without ZERO) for clean ones (the extents are in
 * dirty-bitmap.c, with the other data-path callbacks).  The view of a
 * frozen bitmap reads the disk as of the freeze (control.c).
 *
 * Lock order: only the tracker's lock is taken here, and nothing is
 * called with it held but lookups in the model.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "dirty-bitmap.h"

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
