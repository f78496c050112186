/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * An add-cow header must have every byte outside its fields and names
 * zero, so a new name cannot be written beside the old one and
 * switched to later, as QED allows: any in-place rewrite of the names
 * passes through headers that are invalid.  Instead the whole sidecar
 * (header and bitmap: one bit per cluster, small) is written under a
 * temporary name in the same directory, fdatasynced, and renamed over
 * the old one; the directory is then fsynced.  rename(2) is atomic:
 * after a crash the name leads to the old file or to the new one.
 *
 * The lock: the caller holds the OFD lock of the old file.  The new
 * file is locked before the rename, so a server or tool that opens
 * the name after the rename is refused until we close it; one that
 * opened it before holds the old file and was refused by our lock.
 *
 * Safe rebase: a cluster whose bit is 0 reads from the backing file,
 * and the bytes of the raw image under it are not part of the disk.
 * So the old backing's bytes are written there first (where the old
 * and new backing differ), the image is synced, and then the new
 * sidecar goes in with those bits set and the new backing named, in
 * the one rename.  Before it, the disk reads the old backing; after
 * it, the image holds the same bytes.  When every bit is then 1 the
 * new header also says ALL_ALLOCATED, in the same rename.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow-file.h"
#include "addcow-rebase.h"
#include "cleanup.h"
#include "fsync-dir.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "qad-error.h"

/* *DST = a copy of SRC (NULL stays NULL).  0 or -1 (ENOMEM). */
static int
dup_name (char **dst, const char *src, const char *file)
{
  *dst = NULL;
  if (src && (*dst = strdup (src)) == NULL) {
    qad_error ("%s: %m", file);
    return -1;
  }
  return 0;
}

/* Replace the string in *SLOT by a copy of NAME (NULL: none); *SLOT
 * is unchanged on failure.
 */
static int
replace_name (char **slot, const char *name, const char *file)
{
  char *copy;

  if (dup_name (&copy, name, file) == -1)
    return -1;
  free (*slot);
  *slot = copy;
  return 0;
}

int
addcow_header_copy (struct addcow_header *dst,
                    const struct addcow_header *src)
{
  *dst = *src;
  dst->image_file = dst->backing_file = NULL;
  if (dup_name (&dst->image_file, src->image_file, "add-cow") == -1)
    return -1;
  if (dup_name (&dst->backing_file, src->backing_file, "add-cow") == -1) {
    addcow_header_free (dst);
    return -1;
  }
  return 0;
}

int
addcow_header_set_backing (struct addcow_header *h, const char *file,
                           const char *backing, const char *format)
{
  if (backing && (format == NULL || !addcow_backing_format_defined (format))) {
    qad_error ("%s: backing format %s: must be raw or qed", file,
               format ? format : "(none)");
    errno = EINVAL;
    return -1;
  }
  if (!backing && format) {
    qad_error ("%s: backing format %s without a backing file", file, format);
    errno = EINVAL;
    return -1;
  }
  if (replace_name (&h->backing_file, backing, file) == -1)
    return -1;
  memset (h->backing_format, 0, sizeof h->backing_format);
  if (format)
    strcpy (h->backing_format, format);
  return 0;
}

int
addcow_header_set_image (struct addcow_header *h, const char *file,
                         const char *image)
{
  if (image == NULL || image[0] == '\0' || addcow_name_is_uri (image)) {
    qad_error ("%s: image file name \"%s\": must be a local file", file,
               image ? image : "");
    errno = EINVAL;
    return -1;
  }
  return replace_name (&h->image_file, image, file);
}

void
addcow_header_note_bitmap (struct addcow_header *h, const uint8_t *bm,
                           uint64_t disk_size)
{
  uint64_t n = addcow_nr_clusters (disk_size, h->cluster_bits);

  if (n > 0 && bits_count (bm, 0, n) == n)
    h->compat_features |= ADDCOW_COMPAT_ALL_ALLOCATED;
}

/* Copy [OFFSET, END) of FROM to TO at the same offsets. */
static int
copy_tail (int from, int to, uint64_t offset, uint64_t end,
           const char *path)
{
  char buf[65536];

  while (offset < end) {
    size_t n = MIN ((uint64_t) sizeof buf, end - offset);
    if (full_pread (from, buf, n, offset) == -1 ||
        full_pwrite (to, buf, n, offset) == -1) {
      qad_error ("%s: copying the bitmap: %m", path);
      return -1;
    }
    offset += n;
  }
  return 0;
}

int
addcow_replace_file (int fd, const char *path, const struct addcow_header *h,
                     const uint8_t *bm, uint64_t bmlen, int *new_fd)
{
  CLEANUP_FREE uint8_t *hdr = malloc (h->header_size);
  CLEANUP_FREE char *tmp = NULL;
  struct stat st;
  int tfd;

  if (hdr == NULL) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if (addcow_build_header (h, hdr, path) == -1)
    return -1;
  if (fstat (fd, &st) == -1) {
    qad_error ("%s: fstat: %m", path);
    return -1;
  }
  if ((uint64_t) st.st_size < h->header_size) {
    qad_error ("%s: file of %" PRIu64 " bytes is shorter than its header "
               "(%" PRIu32 " bytes)", path, (uint64_t) st.st_size,
               h->header_size);
    errno = EINVAL;
    return -1;
  }
  tfd = addcow_create_temp (path, &tmp);
  if (tfd == -1)
    return -1;
  if (addcow_lock_fd (tfd, tmp) == -1)
    goto err;
  /* The owner too, where we may (as root); a user's own file is
   * already theirs.
   */
  if ((st.st_uid != geteuid () || st.st_gid != getegid ()) &&
      fchown (tfd, st.st_uid, st.st_gid) == -1 && errno != EPERM) {
    qad_error ("%s: fchown: %m", tmp);
    goto err;
  }
  if (fchmod (tfd, st.st_mode & 07777) == -1 ||
      full_pwrite (tfd, hdr, h->header_size, 0) == -1 ||
      (bm && full_pwrite (tfd, bm, bmlen, h->header_size) == -1)) {
    qad_error ("%s: writing the new add-cow file: %m", tmp);
    goto err;
  }
  if (!bm && copy_tail (fd, tfd, h->header_size, st.st_size, tmp) == -1)
    goto err;
  if (fdatasync (tfd) == -1) {
    qad_error ("%s: fdatasync: %m", tmp);
    goto err;
  }
  if (rename (tmp, path) == -1) {
    qad_error ("%s: cannot rename %s over it: %m", path, tmp);
    goto err;
  }
  if (qad_fsync_dir_of (path) == -1) {
    qad_error ("%s: fsync of its directory: %m", path);
    close (tfd);
    return -1;
  }
  *new_fd = tfd;
  return 0;

 err:
  close (tfd);
  unlink (tmp);
  return -1;
}

int
addcow_rebase_copy (int image_fd, const char *image, uint64_t disk_size,
                    uint32_t cluster_bits, uint8_t *bm,
                    struct qad_blockdev *old_backing,
                    struct qad_blockdev *new_backing,
                    addcow_rebase_progress_fn progress, void *opaque,
                    uint64_t *copied)
{
  const uint64_t cs = UINT64_C (1) << cluster_bits;
  const uint64_t n = addcow_nr_clusters (disk_size, cluster_bits);
  CLEANUP_FREE char *old = malloc (cs);
  CLEANUP_FREE char *new = malloc (cs);
  uint64_t c;

  *copied = 0;
  if (old == NULL || new == NULL) {
    qad_error ("%s: %m", image);
    return -1;
  }
  for (c = 0; c < n; ++c) {
    uint64_t off = c * cs, len = MIN (cs, disk_size - off);

    if (!bit_test (bm, c)) {
      memset (old, 0, len);
      memset (new, 0, len);
      if ((old_backing &&
           qad_blockdev_pread (old_backing, old, len, off) == -1) ||
          (new_backing &&
           qad_blockdev_pread (new_backing, new, len, off) == -1))
        return -1;
      if (memcmp (old, new, len) != 0) {
        if (full_pwrite (image_fd, old, len, off) == -1) {
          qad_error ("%s: writing at offset %" PRIu64 ": %m", image, off);
          return -1;
        }
        bit_set (bm, c);
        *copied += len;
      }
    }
    if (progress && ((c & 1023) == 1023 || c + 1 == n))
      progress (opaque, c + 1, n);
  }
  if (fdatasync (image_fd) == -1) {
    qad_error ("%s: fdatasync: %m", image);
    return -1;
  }
  return 0;
}
