/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Extents of the add-cow disk: clusters with bit 1 report the plugin's
 * extents, clusters with bit 0 the backing file's (holes stay holes),
 * or hole+zero without a backing file.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "copy-up.h"
#include "extents.h"
#include "minmax.h"

/* Copy the plugin's extents for [OFFSET, OFFSET+COUNT) into EXTENTS.
 * Sets *SHORT when the plugin described less than asked (the caller
 * must then stop: extents have to be contiguous).
 */
static int
plugin_extents (nbdkit_next *next, uint64_t count, uint64_t offset,
                uint32_t flags, struct nbdkit_extents *extents,
                bool *short_, int *err)
{
  struct nbdkit_extents *e2;
  uint64_t end = offset + count, pos = offset;
  size_t i, n;
  int r = next->can_extents (next);

  if (r == -1) {
    *err = EIO;
    return -1;
  }
  if (r == 0)
    return nbdkit_add_extent (extents, offset, count, 0);

  e2 = nbdkit_extents_new (offset, end);
  if (e2 == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, count, offset, flags, e2, err) == -1) {
    nbdkit_extents_free (e2);
    return -1;
  }
  n = nbdkit_extents_count (e2);
  for (i = 0; i < n && pos < end; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (e2, i);
    uint64_t eend = MIN (end, e.offset + e.length);
    if (e.offset > pos || eend <= pos)
      continue;
    if (nbdkit_add_extent (extents, pos, eend - pos, e.type) == -1) {
      *err = errno;
      nbdkit_extents_free (e2);
      return -1;
    }
    pos = eend;
  }
  nbdkit_extents_free (e2);
  *short_ = pos < end;
  return 0;
}

static int
backing_extents (uint64_t count, uint64_t offset,
                 struct nbdkit_extents *extents, int *err)
{
  uint64_t end = offset + count;

  if (cow.backing == NULL)
    return nbdkit_add_extent (extents, offset, count,
                              NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
  while (offset < end) {
    uint64_t len;
    uint32_t fl;
    if (qad_blockdev_extent (cow.backing, offset, end - offset, &len, &fl) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
    if (len == 0 || len > end - offset)
      len = end - offset;
    if (nbdkit_add_extent (extents, offset, len, fl) == -1) {
      *err = errno;
      return -1;
    }
    offset += len;
  }
  return 0;
}

int
cow_extents (nbdkit_next *next, uint32_t count, uint64_t offset,
             uint32_t flags, struct nbdkit_extents *extents, int *err)
{
  uint64_t end = offset + count;
  bool short_ = false;

  if (addcow_store_all_set (&cow.store))
    return plugin_extents (next, count, offset, flags, extents, &short_, err);

  while (offset < end) {
    bool v;
    uint64_t rend = cow_run_end (offset, end, &v);

    if (v) {
      if (plugin_extents (next, rend - offset, offset,
                          flags & ~NBDKIT_FLAG_REQ_ONE, extents, &short_,
                          err) == -1)
        return -1;
      if (short_)
        break;
    }
    else if (backing_extents (rend - offset, offset, extents, err) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
    offset = rend;
  }
  return 0;
}

