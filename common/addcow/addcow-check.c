/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * The check reads the bitmap in chunks (memory bounded whatever the
 * disk size) and only ever writes with REPAIR, under the same OFD lock
 * the filter takes, so it cannot race a server.  Repairs only move
 * the file towards what the filter itself would write: bits past the
 * end cleared (they describe no cluster), a fresh bitmap sized with
 * zeroes, ALL_ALLOCATED set when every bit is 1.  A bitmap shorter
 * than the image needs cannot be repaired safely (the missing bits
 * may have been 1): it stays a corruption.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-check.h"
#include "addcow-file.h"
#include "addcow-store.h"
#include "cleanup.h"
#include "full-io.h"
#include "minmax.h"
#include "qad-error.h"

#define CHUNK 65536

static void report (qad_check_report_fn problem, void *opaque,
                    const char *fs, ...)
  __attribute__ ((format (printf, 3, 4)));

static void
report (qad_check_report_fn problem, void *opaque, const char *fs, ...)
{
  char msg[1024];
  va_list ap;

  va_start (ap, fs);
  vsnprintf (msg, sizeof msg, fs, ap);
  va_end (ap);
  problem (opaque, msg);
}

int
addcow_check (const char *path, bool repair, qad_check_report_fn problem,
              void *opaque, struct addcow_check_result *r)
{
  struct addcow_header h;
  CLEANUP_FREE char *image = NULL, *bk = NULL;
  CLEANUP_FREE uint8_t *buf = NULL;
  uint64_t fsz, need, have, off;
  struct stat st;
  bool image_ok;
  int fd, ret = -1;

  memset (r, 0, sizeof *r);
  fd = open (path, (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd == -1) {
    qad_error ("%s: %m", path);
    return -1;
  }
  if ((repair && addcow_lock_fd (fd, path) == -1) ||
      addcow_read_header (fd, path, &h, &fsz) == -1) {
    close (fd);
    return -1;
  }
  r->all_allocated = h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;

  image = addcow_resolve_name (path, h.image_file);
  if (image == NULL)
    goto out;
  image_ok = stat (image, &st) == 0;
  if (!image_ok) {
    report (problem, opaque, "%s: image file %s: %s", path, image,
            strerror (errno));
    r->corruptions++;
  }
  else if (S_ISBLK (st.st_mode)) {
    int ifd = open (image, O_RDONLY | O_CLOEXEC);
    off_t end = ifd >= 0 ? lseek (ifd, 0, SEEK_END) : -1;
    if (ifd >= 0)
      close (ifd);
    r->disk_size = end == -1 ? 0 : end;
  }
  else
    r->disk_size = st.st_size;
  r->nclusters = addcow_nr_clusters (r->disk_size, h.cluster_bits);

  /* A supplied backing's name is a label, never opened (spec 4). */
  if (h.backing_file && !r->all_allocated && !addcow_backing_supplied (&h)) {
    bk = addcow_resolve_name (path, h.backing_file);
    if (bk == NULL)
      goto out;
    if (!addcow_name_is_uri (bk) && access (bk, R_OK) == -1) {
      report (problem, opaque, "%s: backing file %s: %s", path, bk,
              strerror (errno));
      r->corruptions++;
    }
  }

  if (r->all_allocated || !image_ok) {
    if (r->all_allocated)
      r->in_image = r->nclusters;
    ret = 0;
    goto out;
  }

  /* The bitmap. */
  need = addcow_bitmap_size (r->disk_size, h.cluster_bits);
  have = fsz - h.header_size;
  if (have == 0 && need > 0) {
    if (repair) {
      if (ftruncate (fd, h.header_size + need) == -1 || fsync (fd) == -1) {
        qad_error ("%s: sizing the bitmap: %m", path);
        goto out;
      }
      report (problem, opaque, "%s: fresh file: bitmap sized to %" PRIu64
              " bytes (repaired)", path, need);
      r->repaired++;
      have = need;
    }
    else {
      ret = 0;                  /* fresh: valid, all bits 0 */
      goto out;
    }
  }
  if (have < need) {
    report (problem, opaque, "%s: bitmap truncated: the image (%" PRIu64
            " bytes) needs %" PRIu64 " bitmap bytes, the file holds %"
            PRIu64, path, r->disk_size, need, have);
    r->corruptions++;
    ret = 0;
    goto out;
  }

  buf = malloc (CHUNK);
  if (buf == NULL) {
    qad_error ("%s: %m", path);
    goto out;
  }
  for (off = 0; off < have; off += CHUNK) {
    uint64_t n = MIN ((uint64_t) CHUNK, have - off);
    uint64_t first = off * 8, c, past = 0;
    bool dirty = false;

    if (full_pread (fd, buf, n, h.header_size + off) == -1) {
      qad_error ("%s: reading the bitmap: %m", path);
      goto out;
    }
    for (c = 0; c < n * 8; ++c) {
      if (!bit_test (buf, c))
        continue;
      if (first + c < r->nclusters)
        r->in_image++;
      else {
        past++;
        if (repair) {
          bit_clear (buf, c);
          dirty = true;
        }
      }
    }
    if (past) {
      report (problem, opaque, "%s: %" PRIu64 " bit(s) set past the end of "
              "the disk (%" PRIu64 " clusters) in bitmap bytes %" PRIu64
              "..%" PRIu64 "%s", path, past, r->nclusters, off, off + n - 1,
              repair ? " (repaired)" : "");
      if (repair)
        r->repaired += past;
      else
        r->corruptions += past;
    }
    if (dirty && full_pwrite (fd, buf, n, h.header_size + off) == -1) {
      qad_error ("%s: writing the bitmap: %m", path);
      goto out;
    }
  }

  if (r->nclusters > 0 && r->in_image == r->nclusters) {
    if (repair) {
      struct addcow_store_io io;

      addcow_store_io_fd (&io, &fd);
      h.compat_features |= ADDCOW_COMPAT_ALL_ALLOCATED;
      if (fdatasync (fd) == -1 ||
          addcow_write_compat_features (&io, path, h.compat_features) == -1) {
        qad_error ("%s: setting ALL_ALLOCATED: %m", path);
        goto out;
      }
      r->all_allocated = true;
      report (problem, opaque, "%s: every cluster is in the image: "
              "ALL_ALLOCATED set (repaired)", path);
      r->repaired++;
    }
    else
      report (problem, opaque, "%s: every cluster is in the image but "
              "ALL_ALLOCATED is not set (--repair sets it)", path);
  }
  if (repair && fsync (fd) == -1) {
    qad_error ("%s: fsync: %m", path);
    goto out;
  }
  ret = 0;

 out:
  addcow_header_free (&h);
  close (fd);
  return ret;
}
