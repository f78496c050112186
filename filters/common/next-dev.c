/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The plugin below a filter as a block device: see next-dev.h. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "minmax.h"
#include "next-dev.h"
#include "pieces.h"
#include "qad-error.h"

__thread nbdkit_next *next_dev_current;
const char *next_dev_debug_reads;

struct next_dev {
  struct qad_blockdev dev;
  bool can_extents;
};

/* One piece (at most MAX_NEXT_REQUEST bytes) of next_dev_pread. */
static int
read_piece (void *opaque, void *buf, uint64_t count, uint64_t offset)
{
  nbdkit_next *next = opaque;
  int err = 0;

  if (next_dev_debug_reads)
    nbdkit_debug ("%s: read from the plugin: offset=%" PRIu64
                  " count=%" PRIu64, next_dev_debug_reads, offset, count);
  if (next->pread (next, buf, count, offset, 0, &err) == -1) {
    errno = err ? err : EIO;
    return -1;
  }
  return 0;
}

static int
next_dev_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
                uint64_t offset)
{
  return qad_read_pieces (dev->name, buf, count, offset, MAX_NEXT_REQUEST,
                          read_piece, next_dev_current);
}

static int
next_dev_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
                 uint64_t *len, uint32_t *flags)
{
  struct next_dev *d = (struct next_dev *) dev;
  nbdkit_next *next = next_dev_current;
  struct nbdkit_extents *exts;
  struct nbdkit_extent e;
  uint32_t count;
  int err = 0;

  if (offset >= dev->size) {
    *len = max;
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  max = MIN (max, dev->size - offset);
  if (!d->can_extents) {
    *len = max;
    *flags = 0;
    return 0;
  }
  count = MIN (max, (uint64_t) MAX_NEXT_REQUEST);
  exts = nbdkit_extents_new (offset, offset + count);
  if (exts == NULL) {
    errno = ENOMEM;
    return -1;
  }
  if (next->extents (next, count, offset, NBDKIT_FLAG_REQ_ONE, exts,
                     &err) == -1) {
    qad_error ("%s: extents failed: offset=%" PRIu64, dev->name, offset);
    nbdkit_extents_free (exts);
    errno = err ? err : EIO;
    return -1;
  }
  if (nbdkit_extents_count (exts) == 0) {
    *len = count;
    *flags = 0;
  }
  else {
    e = nbdkit_get_extent (exts, 0);
    *len = e.offset == offset && e.length > 0 ? MIN (e.length, max) : count;
    *flags = e.offset == offset ? e.type : 0;
  }
  nbdkit_extents_free (exts);
  return 0;
}

static void
next_dev_close (struct qad_blockdev *dev)
{
  free (dev->name);
  free (dev);
}

static const struct qad_blockdev_ops next_dev_ops = {
  .pread = next_dev_pread,
  .extent = next_dev_extent,
  .close = next_dev_close,
};

int
next_dev_prepare (nbdkit_next *next)
{
  next_dev_enter (next);
  return next->can_extents (next) == -1 ? -1 : 0;
}

int
next_dev_check_size (nbdkit_next *next, uint64_t size, const char *name)
{
  int64_t now = next->get_size (next);

  if (now == -1)
    return -1;
  if ((uint64_t) now != size) {
    nbdkit_error ("%s: the plugin now serves %" PRIi64 " bytes, but %"
                  PRIu64 " when it was opened", name, now, size);
    return -1;
  }
  return 0;
}

struct qad_blockdev *
next_dev_open (const char *description, const char *exportname)
{
  nbdkit_next *next = next_dev_current;
  struct next_dev *d;
  int64_t size;
  int r;

  size = next->get_size (next);
  if (size == -1)
    return NULL;
  r = next->can_extents (next);
  if (r == -1)
    return NULL;
  d = calloc (1, sizeof *d);
  if (d == NULL ||
      (exportname[0] == '\0'
       ? (d->dev.name = strdup (description)) == NULL
       : asprintf (&d->dev.name, "%s (export '%s')", description,
                   exportname) == -1)) {
    nbdkit_error ("calloc: %m");
    free (d);
    return NULL;
  }
  d->dev.ops = &next_dev_ops;
  d->dev.size = size;
  d->can_extents = r == 1;
  return &d->dev;
}
