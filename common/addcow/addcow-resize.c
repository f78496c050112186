/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * An add-cow disk is as large as its raw image (the header records no
 * size); the bitmap must cover it, and may be longer if its extra bits
 * are 0 (docs/specs/add-cow.txt).  So every step below keeps one
 * invariant: the bitmap on disk covers the image on disk, extra bits 0.
 *
 * Grow: extend the bitmap (zeroes, or ones under ALL_ALLOCATED, where
 * bits are not read), sync, then extend the image (reads zeroes),
 * sync.  New clusters have bit 0 and read from the backing file, which
 * is why a backing file larger than the old size refuses the grow.
 *
 * Shrink: checked first (no cluster held by the image is cut off);
 * truncate the image, sync, then the bitmap, sync.
 *
 * Empty (after a commit, every cluster the image held being in the
 * backing file and synced): with ALL_ALLOCATED, write every bit 1 and
 * sync before clearing the flag (an 8-byte write that cannot tear),
 * so the image is read throughout.  Then truncate the sidecar to its
 * header ("fresh": every bit 0) in one ftruncate, and extend it again
 * with zeroes: each state reads the same bytes, since the backing file
 * now holds what the image held.  Last, punch the image, whose bytes
 * nothing reads any more.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow-file.h"
#include "addcow-resize.h"
#include "addcow-store.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "qad-error.h"

/* Sizes and bitmap of an open pair. */
static int
pair_load (struct addcow_pair *p)
{
  struct stat st;

  if (fstat (p->image_fd, &st) == -1) {
    qad_error ("%s: fstat: %m", p->image);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    qad_error ("%s: the add-cow image is not a regular file", p->image);
    errno = EINVAL;
    return -1;
  }
  p->disk_size = st.st_size;
  if (fstat (p->fd, &st) == -1) {
    qad_error ("%s: fstat: %m", p->path);
    return -1;
  }
  p->file_size = st.st_size;
  p->all_allocated = p->h->compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;
  p->fresh = false;
  if (p->all_allocated)
    return 0;
  if (addcow_load_bitmap (p->fd, p->path, p->h, p->file_size, p->disk_size,
                          &p->bitmap, &p->bmlen, &p->fresh) == -1)
    return -1;
  return 0;
}

int
addcow_pair_open (struct addcow_pair *p, struct addcow_header *h,
                  const char *path)
{
  uint64_t fsz;

  *p = (struct addcow_pair) { .path = path, .h = h, .image_fd = -1 };
  p->fd = open (path, O_RDWR | O_CLOEXEC);
  if (p->fd == -1) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if (addcow_lock_fd (p->fd, path) == -1 ||
      addcow_read_header (p->fd, path, h, &fsz) == -1) {
    close (p->fd);
    return -1;
  }
  p->image = addcow_resolve_name (path, h->image_file);
  if (p->image == NULL)
    goto err;
  p->image_fd = open (p->image, O_RDWR | O_CLOEXEC);
  if (p->image_fd == -1) {
    qad_error ("%s: image file %s: %m", path, p->image);
    goto err;
  }
  if (pair_load (p) == -1)
    goto err;
  return 0;

 err:
  addcow_pair_close (p);
  return -1;
}

void
addcow_pair_close (struct addcow_pair *p)
{
  free (p->bitmap);
  free (p->image);
  if (p->image_fd >= 0)
    close (p->image_fd);
  if (p->fd >= 0)
    close (p->fd);
  addcow_header_free (p->h);
  p->bitmap = NULL;
  p->image = NULL;
  p->fd = p->image_fd = -1;
}

uint64_t
addcow_first_allocated_from (const struct addcow_pair *p, uint64_t offset)
{
  unsigned bits = p->h->cluster_bits;
  uint64_t c, first;

  if (offset >= p->disk_size)
    return UINT64_MAX;
  if (p->all_allocated)
    return offset;
  if (p->fresh)
    return UINT64_MAX;
  c = offset >> bits;
  first = bits_find_set (p->bitmap, c, p->bmlen * 8);
  if (first == p->bmlen * 8)
    return UINT64_MAX;
  return first == c ? offset : first << bits;
}

/* Set the bits of clusters [FROM, N) in the sidecar: the first and
 * last bytes read-modify-written, the bytes between written whole.
 */
static int
set_bits (struct addcow_pair *p, uint64_t from, uint64_t n)
{
  uint8_t ones[4096];
  uint64_t c = from;

  memset (ones, 0xff, sizeof ones);
  while (c < n) {
    uint64_t off = p->h->header_size + c / 8;

    if (c % 8 != 0 || n - c < 8) {
      uint8_t byte;
      if (full_pread (p->fd, &byte, 1, off) == -1)
        return -1;
      do
        byte |= 1 << (c % 8);
      while (++c < n && c % 8 != 0);
      if (full_pwrite (p->fd, &byte, 1, off) == -1)
        return -1;
    }
    else {
      uint64_t bytes = (n - c) / 8;
      size_t len = bytes < sizeof ones ? bytes : sizeof ones;
      if (full_pwrite (p->fd, ones, len, off) == -1)
        return -1;
      c += len * 8;
    }
  }
  return 0;
}

/* Extend or cut the sidecar's bitmap to cover DISK bytes; with ONES,
 * the bits of clusters [FROM, new count) are set.  Synced.
 */
static int
size_bitmap (struct addcow_pair *p, uint64_t disk, bool ones, uint64_t from)
{
  uint64_t need = addcow_bitmap_size (disk, p->h->cluster_bits);
  uint64_t n = addcow_nr_clusters (disk, p->h->cluster_bits);

  if (ftruncate (p->fd, p->h->header_size + need) == -1 ||
      (ones && set_bits (p, from, n) == -1) ||
      fsync (p->fd) == -1) {
    qad_error ("%s: sizing the bitmap to %" PRIu64 " bytes: %m", p->path,
               need);
    return -1;
  }
  p->file_size = p->h->header_size + need;
  return 0;
}

static int
size_image (struct addcow_pair *p, uint64_t size)
{
  if (ftruncate (p->image_fd, size) == -1 || fsync (p->image_fd) == -1) {
    qad_error ("%s: resizing the image to %" PRIu64 " bytes: %m", p->image,
               size);
    return -1;
  }
  p->disk_size = size;
  return 0;
}

int
addcow_resize (struct addcow_pair *p, uint64_t new_size, bool shrink,
               uint64_t backing_size)
{
  uint64_t old = p->disk_size, first;

  if (new_size == old)
    return 0;
  if (new_size > old) {
    if (!p->all_allocated && backing_size > old) {
      if (backing_size == UINT64_MAX)
        qad_error ("%s: cannot grow: the size of the backing file is "
                   "unknown, and a larger one would show through the new "
                   "area", p->path);
      else
        qad_error ("%s: cannot grow from %" PRIu64 " bytes: the backing "
                   "file is larger (%" PRIu64 " bytes) and its data would "
                   "show through the new area", p->path, old, backing_size);
      errno = ENOTSUP;
      return -1;
    }
    if (!p->fresh &&
        size_bitmap (p, new_size, p->all_allocated,
                     addcow_nr_clusters (old, p->h->cluster_bits)) == -1)
      return -1;
    return size_image (p, new_size);
  }

  if (!shrink) {
    qad_error ("%s: new size %" PRIu64 " is smaller than the current %"
               PRIu64 ": shrinking needs --shrink", p->path, new_size, old);
    errno = EINVAL;
    return -1;
  }
  first = addcow_first_allocated_from (p, new_size);
  if (first != UINT64_MAX) {
    qad_error ("%s: cannot shrink to %" PRIu64 " bytes: guest offset %"
               PRIu64 " (0x%" PRIx64 ") past the new end is held by the "
               "image %s", p->path, new_size, first, first, p->image);
    errno = ENOTEMPTY;
    return -1;
  }
  if (size_image (p, new_size) == -1)
    return -1;
  return p->fresh ? 0 : size_bitmap (p, new_size, false, 0);
}

int
addcow_make_empty (struct addcow_pair *p)
{
  uint64_t need = addcow_bitmap_size (p->disk_size, p->h->cluster_bits);
  uint64_t compat = p->h->compat_features;

  if (p->all_allocated) {
    if (size_bitmap (p, p->disk_size, true, 0) == -1)
      return -1;
    compat &= ~ADDCOW_COMPAT_ALL_ALLOCATED;
    struct addcow_store_io io;

    addcow_store_io_fd (&io, &p->fd);
    if (addcow_write_compat_features (&io, p->path, compat) == -1)
      return -1;
    if (fsync (p->fd) == -1) {
      qad_error ("%s: clearing ALL_ALLOCATED: %m", p->path);
      return -1;
    }
    p->all_allocated = false;
  }
  if (ftruncate (p->fd, p->h->header_size) == -1 ||
      ftruncate (p->fd, p->h->header_size + need) == -1 ||
      fsync (p->fd) == -1) {
    qad_error ("%s: clearing the bitmap: %m", p->path);
    return -1;
  }
  p->file_size = p->h->header_size + need;
  if (p->bitmap)
    memset (p->bitmap, 0, p->bmlen);
  p->fresh = false;

  /* Nothing reads the image's bytes now: give their space back. */
  if (p->disk_size > 0 &&
      fallocate (p->image_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 0, p->disk_size) == -1 &&
      errno != EOPNOTSUPP && errno != ENOSYS) {
    qad_error ("%s: punching the committed clusters: %m", p->image);
    return -1;
  }
  return 0;
}
