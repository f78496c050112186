/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * File-level operations on a sidecar, shared by the filter and the
 * CLI: read and validate the header, load the bitmap for a given disk
 * size, create a new sidecar, rewrite the header.
 *
 * A new sidecar is written under a temporary name in the same
 * directory, fsynced, then linked into place with link(2) (which
 * never replaces an existing file) and the directory fsynced: a crash
 * leaves either no sidecar or a complete one.
 *
 * A sidecar whose length is exactly HEADER_SIZE has no bitmap yet
 * (the spec calls it "fresh": every bit is 0).  The filter creates
 * sidecars that way because it learns the disk size only when the
 * first client connects; it then extends the file with zeroes.
 * Anything between "fresh" and the full bitmap is a truncated file
 * and is refused.
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

#include "addcow.h"
#include "addcow-file.h"
#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "fsync-dir.h"
#include "full-io.h"
#include "image-lock.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-limits.h"

int
addcow_read_header (int fd, const char *path, struct addcow_header *h,
                    uint64_t *file_size)
{
  CLEANUP_FREE uint8_t *buf = NULL;
  struct stat st;
  size_t len;

  if (fstat (fd, &st) == -1) {
    qad_error ("%s: fstat: %m", path);
    return -1;
  }
  *file_size = st.st_size;
  len = MIN ((uint64_t) st.st_size, (uint64_t) ADDCOW_MAX_HEADER_SIZE);
  buf = malloc (len ? len : 1);
  if (buf == NULL) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if (full_pread (fd, buf, len, 0) == -1) {
    qad_error ("%s: reading add-cow header: %m", path);
    return -1;
  }
  return addcow_parse_header (buf, len, path, h);
}

int
addcow_load_bitmap (int fd, const char *path, const struct addcow_header *h,
                    uint64_t file_size, uint64_t disk_size,
                    uint8_t **bm_ret, uint64_t *bmlen_ret, bool *fresh)
{
  uint64_t need = addcow_bitmap_size (disk_size, h->cluster_bits);
  uint64_t nclusters = addcow_nr_clusters (disk_size, h->cluster_bits);
  uint64_t have = file_size - h->header_size; /* parse checked >= */
  uint64_t bad, off;
  uint8_t *bm;

  *fresh = have == 0;
  if (have != 0 && have < need) {
    /* The largest disk the bitmap's whole clusters describe
     * (saturating): the length is always a multiple of the cluster
     * size, so anything else is a truncation.
     */
    uint64_t whole = have & ~((UINT64_C (1) << h->cluster_bits) - 1);
    uint64_t covers;

    if (MUL_OVERFLOW (whole, UINT64_C (8) << h->cluster_bits, &covers))
      covers = UINT64_MAX;
    qad_error ("%s: the image is %" PRIu64 " bytes, but the add-cow "
               "bitmap (%" PRIu64 " bytes at offset %" PRIu32 ") covers "
               "at most %" PRIu64 " bytes: the image grew since the "
               "sidecar was made, or the sidecar is truncated",
               path, disk_size, have, h->header_size, covers);
    errno = EINVAL;
    return -1;
  }
  if (need > SIZE_MAX || need > qad_limits.max_bitmap_bytes) {
    qad_error ("%s: add-cow bitmap of %" PRIu64 " bytes (a disk of %"
               PRIu64 " bytes in %" PRIu64 " clusters of %" PRIu64
               ") exceeds the limit of %" PRIu64 " bytes (raise it with "
               "max-bitmap-size=, or use larger clusters)",
               path, need, disk_size, nclusters,
               UINT64_C (1) << h->cluster_bits, qad_limits.max_bitmap_bytes);
    errno = EFBIG;
    return -1;
  }
  bm = calloc (1, need ? need : 1);
  if (bm == NULL) {
    qad_error ("%s: cannot allocate %" PRIu64 " bytes for the bitmap: %m",
               path, need);
    return -1;
  }
  if (have && full_pread (fd, bm, need, h->header_size) == -1) {
    qad_error ("%s: reading add-cow bitmap: %m", path);
    goto err;
  }
  bad = bits_find_set (bm, nclusters, need * 8);
  /* Bytes past the bitmap this disk needs (the image shrank, or a
   * bigger file): they must be zero too.
   */
  if (bad >= need * 8)
    bad = UINT64_MAX;
  for (off = need; bad == UINT64_MAX && off < have; ) {
    uint8_t chunk[4096];
    size_t n = MIN ((uint64_t) sizeof chunk, have - off);
    if (full_pread (fd, chunk, n, h->header_size + off) == -1) {
      qad_error ("%s: reading add-cow bitmap: %m", path);
      goto err;
    }
    bad = bits_find_set (chunk, 0, n * 8);
    bad = bad == n * 8 ? UINT64_MAX : bad + off * 8;
    off += n;
  }
  if (bad != UINT64_MAX) {
    qad_error ("%s: the image is %" PRIu64 " bytes (%" PRIu64 " clusters), "
               "but the add-cow bitmap marks cluster %" PRIu64 " (at byte %"
               PRIu64 ") as written: the image shrank since the sidecar "
               "was made and lost data", path, disk_size, nclusters, bad,
               bad > UINT64_MAX >> h->cluster_bits ? UINT64_MAX
               : bad << h->cluster_bits);
    errno = EINVAL;
    goto err;
  }
  *bm_ret = bm;
  *bmlen_ret = need;
  return 0;

 err:
  free (bm);
  return -1;
}

int
addcow_create_temp (const char *path, char **tmp)
{
  int fd;

  if (asprintf (tmp, "%s.tmpXXXXXX", path) == -1) {
    *tmp = NULL;
    qad_error ("%s: %m", path);
    return -1;
  }
  fd = mkostemp (*tmp, O_CLOEXEC);
  if (fd == -1)
    qad_error ("%s: cannot create temporary file %s: %m", path, *tmp);
  return fd;
}

int
addcow_create_file (const char *path, const struct addcow_header *h,
                    bool with_bitmap, uint64_t disk_size)
{
  CLEANUP_FREE uint8_t *buf = NULL;
  CLEANUP_FREE char *tmp = NULL;
  uint64_t len = h->header_size;
  int fd;

  buf = malloc (h->header_size);
  if (buf == NULL) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if (addcow_build_header (h, buf, path) == -1)
    return -1;
  if (with_bitmap)
    len += addcow_bitmap_size (disk_size, h->cluster_bits);

  fd = addcow_create_temp (path, &tmp);
  if (fd == -1)
    return -1;
  if (fchmod (fd, 0644) == -1 ||
      full_pwrite (fd, buf, h->header_size, 0) == -1 ||
      ftruncate (fd, len) == -1 ||
      fsync (fd) == -1) {
    qad_error ("%s: writing new add-cow file: %m", tmp);
    goto err;
  }
  if (close (fd) == -1) {
    fd = -1;
    qad_error ("%s: writing new add-cow file: %m", tmp);
    goto err;
  }
  fd = -1;
  if (link (tmp, path) == -1) {
    if (errno == EEXIST)
      qad_error ("%s: already exists (refusing to replace it)", path);
    else
      qad_error ("%s: cannot create: %m", path);
    goto err;
  }
  unlink (tmp);
  if (qad_fsync_dir_of (path) == -1) {
    qad_error ("%s: fsync of its directory: %m", path);
    return -1;
  }
  return 0;

 err:
  if (fd >= 0)
    close (fd);
  unlink (tmp);
  return -1;
}

int
addcow_write_header (int fd, const char *path, const struct addcow_header *h)
{
  CLEANUP_FREE uint8_t *buf = malloc (h->header_size);

  if (buf == NULL) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if (addcow_build_header (h, buf, path) == -1)
    return -1;
  if (full_pwrite (fd, buf, h->header_size, 0) == -1) {
    qad_error ("%s: writing add-cow header: %m", path);
    return -1;
  }
  return 0;
}

int
addcow_lock_fd (int fd, const char *path)
{
  return qad_lock_whole_file (fd, path, "add-cow file");
}
