/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design: changing the backing file without a window in
 * which a crash (kill -9 or power loss) leaves a broken image.
 *
 * The QED header records the backing name as (offset, size) into the
 * header area; the name bytes themselves live elsewhere in that area.
 * Rewriting the name in place would leave, after a crash between the
 * name write and the header write, a header that points at a half
 * old, half new name.  So:
 *
 *  1. The new name goes to bytes the current header does not point
 *     at (qed_choose_backing_name_offset): right after the 64-byte
 *     header, or right after the current name.  Writing there changes
 *     nothing the image means.  fdatasync.
 *  2. The 64-byte header (features with BACKING_FILE and NO_PROBE,
 *     name offset and size) is written in one pwrite at offset 0: it
 *     lies inside the first 512-byte sector, which a disk writes
 *     whole, and a pwrite of 64 bytes into the page cache is not
 *     split by a signal.  fdatasync.
 *
 * After a crash the file holds either the old header (and the old
 * name, untouched) or the new header (and the new name, durable before
 * it).  When the header area cannot hold both names QEMU would rewrite
 * the name in place; we refuse (ENOSPC) rather than open that window.
 *
 * Safe rebase (qed_rebase_copy) writes, into clusters the image does
 * not allocate, the bytes the old backing gives them, through the
 * normal write path, which makes the data durable before the L2 entry
 * that points at it.  While the header still names the old backing,
 * such a cluster reads the same whether or not its allocation reached
 * the disk.  The header switch comes last, after a flush, so at every
 * moment the image reads the old disk, and after the switch the same
 * disk through the new backing.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checked-overflow.h"
#include "cleanup.h"
#include "full-io.h"
#include "minmax.h"
#include "qad-error.h"
#include "qed-rebase.h"

/* Do [a, a+alen) and [b, b+blen) overlap? */
static bool
overlaps (uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
  return a < b + blen && b < a + alen;
}

int
qed_choose_backing_name_offset (const char *filename,
                                const struct qed_header *h,
                                const struct qed_geometry *g,
                                uint32_t name_len, uint32_t *offset)
{
  bool has_name = h->features & QED_F_BACKING_FILE;
  uint64_t old_off = has_name ? h->backing_name_offset : 0;
  uint64_t old_len = has_name ? h->backing_name_size : 0;
  const uint64_t candidates[2] = { QED_HEADER_BYTES, old_off + old_len };
  size_t i;

  for (i = 0; i < 2; ++i) {
    uint64_t c = candidates[i];
    if (c >= QED_HEADER_BYTES && c <= UINT32_MAX &&
        c + name_len <= g->header_bytes &&
        !overlaps (c, name_len, old_off, old_len)) {
      *offset = c;
      return 0;
    }
  }
  qad_error ("%s: the QED header area of %" PRIu64 " bytes cannot hold the "
             "new backing name (%" PRIu32 " bytes) beside the current one "
             "(%" PRIu64 " bytes at offset %" PRIu64 "); rewriting it in "
             "place would not be crash-safe",
             filename, g->header_bytes, name_len, old_len, old_off);
  errno = ENOSPC;
  return -1;
}

int
qed_header_set_backing (struct qed_image *img, const char *name,
                        const char *format)
{
  const char *file = img->dev.name;
  struct qed_header h;
  size_t len = name ? strlen (name) : 0;
  uint64_t features = 0;
  uint32_t offset = 0;

  if (img->readonly || img->fd < 0) {
    qad_error ("%s: the image is not open for writing", file);
    errno = EROFS;
    return -1;
  }
  if (len > QED_MAX_BACKING_NAME) {
    qad_error ("%s: backing file name of %zu bytes is longer than %d",
               file, len, QED_MAX_BACKING_NAME);
    errno = EINVAL;
    return -1;
  }
  if (len > 0) {
    if (qed_backing_format_features (file, format, &features) == -1 ||
        qed_choose_backing_name_offset (file, &img->header, &img->geom,
                                        len, &offset) == -1)
      return -1;
    /* Step 1: the name where nothing points yet, made durable. */
    if (full_pwrite (img->fd, name, len, offset) == -1) {
      qad_error ("%s: cannot write the backing name: %m", file);
      return -1;
    }
    if (qed_flush (img) == -1)
      return -1;
  }
  else if (format) {
    qad_error ("%s: a backing format (%s) needs a backing file", file,
               format);
    errno = EINVAL;
    return -1;
  }

  /* Step 2: the header in one write, then durable. */
  pthread_mutex_lock (&img->lock);
  h = img->header;
  img->header.features &= ~(QED_F_BACKING_FILE |
                            QED_F_BACKING_FORMAT_NO_PROBE);
  img->header.features |= features;
  img->header.backing_name_offset = offset;
  img->header.backing_name_size = len;
  if (qed_write_header (img) == -1) {
    img->header = h;
    pthread_mutex_unlock (&img->lock);
    return -1;
  }
  pthread_mutex_unlock (&img->lock);
  return qed_flush (img);
}

int
qed_rebase_copy (struct qed_image *img, struct qad_blockdev *new_backing,
                 qed_rebase_progress_fn progress, void *opaque,
                 uint64_t *copied)
{
  const uint64_t cs = img->geom.cluster_size;
  const uint64_t size = img->header.image_size;
  CLEANUP_FREE char *old = malloc (cs);
  CLEANUP_FREE char *new = malloc (cs);
  uint64_t off = 0;

  *copied = 0;
  if (old == NULL || new == NULL) {
    qad_error ("%s: %m", img->dev.name);
    return -1;
  }
  while (off < size) {
    struct qed_mapping m;
    uint64_t end, c;

    if (qed_map (img, off, size - off, &m) == -1)
      return -1;
    end = off + m.length;
    /* Allocated and zero clusters do not read the backing file. */
    for (c = off; m.kind == QED_KIND_UNALLOCATED && c < end; c += cs) {
      uint64_t n = MIN (cs, size - c);

      if (qed_pread (img, old, n, c) == -1)
        return -1;
      if (new_backing) {
        if (qad_blockdev_pread (new_backing, new, n, c) == -1)
          return -1;
      }
      else
        memset (new, 0, n);
      if (memcmp (old, new, n) != 0) {
        if (qed_pwrite (img, old, n, c, false) == -1)
          return -1;
        *copied += n;
      }
      if (progress && c + n < end && (c / cs) % 1024 == 1023)
        progress (opaque, c + n, size);
    }
    off = end;
    if (progress)
      progress (opaque, off, size);
  }
  return qed_flush (img);
}
