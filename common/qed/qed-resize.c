/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * A QED image's L1 table has a fixed size (table_size clusters), so
 * the largest guest size is fixed at creation (docs/specs/qed.txt,
 * "Image size").  Resizing within it changes only header.image_size:
 * L2 tables are allocated on demand by the write path, and entries
 * past image_size are never read.  QEMU's QED driver does the same and
 * never grows or moves the L1 table; neither do we, so that an image
 * we resized is one QEMU could have produced.
 *
 * The new area must read as zeroes.  Without a backing file it does:
 * past the old size every L2 entry is 0 (or 1, zero), and the tail of
 * a data cluster straddling the old end was filled with zeroes when it
 * was allocated.  With a backing file larger than the old size the
 * backing file's bytes would show through; QEMU refuses that case
 * ("does not support requested flags") and so do we.
 *
 * Shrinking is refused while any data cluster lies at or past the new
 * size, so no written byte is lost and a later grow reads zeroes there
 * again.  Zero clusters past the new end may stay: they read zeroes.
 *
 * Crash safety: the only write is the 64-byte header in sector 0,
 * which a crash leaves old or new; both are valid images.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <unistd.h>

#include "qad-error.h"
#include "qed-resize.h"

int
qed_offline_writable (struct qed_image *img, const char *what)
{
  if (img->readonly || img->fd == -1) {
    qad_error ("%s: %s needs the image open read-write", img->dev.name,
               what);
    errno = EROFS;
    return -1;
  }
  if (img->header.features & QED_F_NEED_CHECK) {
    qad_error ("%s: the image has NEED_CHECK set (it was not closed "
               "cleanly): run \"qad-img check -r all\" first",
               img->dev.name);
    errno = EINVAL;
    return -1;
  }
  return 0;
}

/* qed_first_data_from, calling PROGRESS (may be NULL) every 64
 * mappings and at the end with the bytes scanned of the area from
 * OFFSET to the end.
 */
static int
first_data_from (struct qed_image *img, uint64_t offset, uint64_t *found,
                 qed_resize_progress_fn progress, void *opaque)
{
  uint64_t size = img->header.image_size;
  uint64_t start = offset - offset % img->geom.cluster_size;
  uint64_t off = start, total = size > start ? size - start : 0;
  unsigned n = 0;

  *found = UINT64_MAX;
  while (off < size) {
    struct qed_mapping m;

    if (qed_map (img, off, size - off, &m) == -1)
      return -1;
    if (m.kind == QED_KIND_DATA) {
      *found = off > offset ? off : offset;
      return 0;
    }
    off += m.length;
    if (progress && ++n % 64 == 0 && off < size)
      progress (opaque, off - start, total);
  }
  if (progress)
    progress (opaque, total, total);
  return 0;
}

int
qed_first_data_from (struct qed_image *img, uint64_t offset, uint64_t *found)
{
  return first_data_from (img, offset, found, NULL, NULL);
}

static int
sync_header (struct qed_image *img, uint64_t new_size)
{
  uint64_t old_size = img->header.image_size;

  img->header.image_size = new_size;
  if (qed_write_header (img) == -1 || fdatasync (img->fd) == -1) {
    if (errno)
      qad_error ("%s: writing the new image size: %m", img->dev.name);
    img->header.image_size = old_size;
    return -1;
  }
  img->dev.size = new_size;
  return 0;
}

int
qed_resize (struct qed_image *img, uint64_t new_size, bool shrink)
{
  return qed_resize_progress (img, new_size, shrink, NULL, NULL);
}

int
qed_resize_progress (struct qed_image *img, uint64_t new_size, bool shrink,
                     qed_resize_progress_fn progress, void *opaque)
{
  const char *name = img->dev.name;
  uint64_t old_size = img->header.image_size;
  uint64_t first;

  if (qed_offline_writable (img, "resize") == -1)
    return -1;
  if (new_size % 512 != 0 || new_size == 0) {
    qad_error ("%s: new size %" PRIu64 " is not a positive multiple of "
               "512", name, new_size);
    errno = EINVAL;
    return -1;
  }
  if (new_size == old_size)
    return 0;

  if (new_size > old_size) {
    if (new_size > img->geom.max_image_size) {
      qad_error ("%s: new size %" PRIu64 " exceeds %" PRIu64 ", the most "
                 "this image's L1 table can map (cluster_size=%" PRIu32
                 ", table_size=%" PRIu32 "; QED cannot grow its L1 table)",
                 name, new_size, img->geom.max_image_size,
                 img->header.cluster_size, img->header.table_size);
      errno = EFBIG;
      return -1;
    }
    if ((img->header.features & QED_F_BACKING_FILE) && !img->backing) {
      qad_error ("%s: cannot grow: the backing file was not opened, so "
                 "its size is unknown", name);
      errno = EINVAL;
      return -1;
    }
    if (img->backing && img->backing->size > old_size) {
      qad_error ("%s: cannot grow from %" PRIu64 " bytes: the backing file "
                 "%s is larger (%" PRIu64 " bytes) and its data would show "
                 "through the new area (qemu-img refuses this too)",
                 name, old_size, img->backing->name, img->backing->size);
      errno = ENOTSUP;
      return -1;
    }
    return sync_header (img, new_size);
  }

  if (!shrink) {
    qad_error ("%s: new size %" PRIu64 " is smaller than the current %"
               PRIu64 ": shrinking needs --shrink", name, new_size, old_size);
    errno = EINVAL;
    return -1;
  }
  if (first_data_from (img, new_size, &first, progress, opaque) == -1)
    return -1;
  if (first != UINT64_MAX) {
    qad_error ("%s: cannot shrink to %" PRIu64 " bytes: guest offset %"
               PRIu64 " (0x%" PRIx64 ") past the new end holds data", name,
               new_size, first, first);
    errno = ENOTEMPTY;
    return -1;
  }
  return sync_header (img, new_size);
}
