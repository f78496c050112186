/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The writable backing file of qad-img commit.  A raw file is written
 * with pwrite and zeroed by punching (or writing zeroes); a QED image
 * goes through the library's write path (qed_pwrite, qed_zero,
 * qed_flush), which keeps it crash-consistent on its own.  Both are
 * locked as a writer, QEMU-compatibly, so a server or qemu-img using
 * the backing file refuses us and we refuse them.
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

#include "commit-target.h"
#include "full-io.h"
#include "image-lock.h"
#include "pieces.h"
#include "qed-image.h"
#include "qed-resize.h"

/* Image formats a backing file may hold that we must not write as raw
 * (their headers would be overwritten as if they were guest data).
 */
static const char *
foreign_format (const unsigned char *m, ssize_t len)
{
  static const struct { const char *magic; size_t len; const char *name; }
  known[] = {
    { "QFI\xfb", 4, "qcow2" }, { "KDMV", 4, "vmdk" },
    { "conectix", 8, "vpc" }, { "vhdxfile", 8, "vhdx" },
    { "<<< ", 4, "vdi" }, { "ACOW", 4, "add-cow" }, { "QDB\0", 4, "QDB" },
  };
  size_t i;

  for (i = 0; i < sizeof known / sizeof known[0]; ++i)
    if ((size_t) len >= known[i].len &&
        memcmp (m, known[i].magic, known[i].len) == 0)
      return known[i].name;
  return NULL;
}

int
commit_target_open (struct commit_target *t, const char *image,
                    const char *name, const char *path, const char *format,
                    const struct qad_backing_rules *rules, int overlay_fd)
{
  struct stat st, ost;
  unsigned char magic[8];
  ssize_t len;
  const char *foreign;
  int fd;

  memset (t, 0, sizeof *t);
  t->path = path;
  t->fd = -1;
  if (qad_backing_check_name (rules, image, name, false) == -1)
    return -1;
  /* Opened read-only under the policy's checks first. */
  fd = qad_backing_open (rules, image, name, path);
  if (fd == -1)
    return -1;
  len = pread (fd, magic, sizeof magic, 0);
  if (fstat (fd, &st) == -1 || fstat (overlay_fd, &ost) == -1) {
    fprintf (stderr, "qad-img: %s: fstat: %s\n", path, strerror (errno));
    close (fd);
    return -1;
  }
  close (fd);
  if (st.st_dev == ost.st_dev && st.st_ino == ost.st_ino) {
    fprintf (stderr, "qad-img: %s: the backing file %s is the image "
             "itself\n", image, path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    fprintf (stderr, "qad-img: %s: backing file %s is not a regular file: "
             "qad-img commits only into raw or QED files\n", image, path);
    return -1;
  }
  if (format == NULL)
    format = len >= 4 && memcmp (magic, "QED\0", 4) == 0 ? "qed" : "raw";
  foreign = strcmp (format, "raw") == 0 ? foreign_format (magic, len) : NULL;
  if (foreign || (strcmp (format, "raw") != 0 && strcmp (format, "qed") != 0)) {
    fprintf (stderr, "qad-img: %s: backing file %s is a %s file: qad-img "
             "commits only into raw or QED files\n", image, path,
             foreign ? foreign : format);
    return -1;
  }

  if (strcmp (format, "qed") == 0) {
    struct qed_open_options o = { .lock = true, .backing_rules = rules };
    t->is_qed = true;
    t->qed = qed_open (path, &o);
    if (t->qed == NULL)
      return -1;
    if (qed_offline_writable (t->qed, "commit") == -1) {
      qed_close (t->qed);
      t->qed = NULL;
      return -1;
    }
    t->size = t->qed->header.image_size;
    return 0;
  }
  t->fd = open (path, O_RDWR | O_CLOEXEC);
  if (t->fd == -1) {
    fprintf (stderr, "qad-img: %s: backing file %s is not writable: %s\n",
             image, path, strerror (errno));
    return -1;
  }
  if (qad_lock_image (t->fd, path, true) == -1 || fstat (t->fd, &st) == -1) {
    close (t->fd);
    t->fd = -1;
    return -1;
  }
  t->size = st.st_size;
  return 0;
}

int
commit_target_grow (struct commit_target *t, uint64_t size)
{
  if (size <= t->size)
    return 0;
  if (t->is_qed) {
    /* QED sizes are whole sectors. */
    if (qed_resize (t->qed, (size + 511) & ~UINT64_C (511), false) == -1)
      return -1;
  }
  else if (ftruncate (t->fd, size) == -1) {
    fprintf (stderr, "qad-img: %s: growing the backing file to %" PRIu64
             " bytes: %s\n", t->path, size, strerror (errno));
    return -1;
  }
  t->size = size;
  return 0;
}

int
commit_target_write (struct commit_target *t, const void *buf,
                     uint64_t count, uint64_t offset)
{
  if (t->is_qed)
    return qed_pwrite (t->qed, buf, count, offset, false);
  if (full_pwrite (t->fd, buf, count, offset) == -1) {
    fprintf (stderr, "qad-img: %s: write at offset %" PRIu64 ": %s\n",
             t->path, offset, strerror (errno));
    return -1;
  }
  return 0;
}

/* One piece of the zeroes commit_target_zero writes. */
static int
write_zero_piece (void *opaque, const void *buf, uint64_t count,
                  uint64_t offset)
{
  return commit_target_write (opaque, buf, count, offset);
}

int
commit_target_zero (struct commit_target *t, uint64_t count, uint64_t offset)
{
  if (t->is_qed)
    return qed_zero (t->qed, count, offset, true, false, false);
  if (fallocate (t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 offset, count) == 0)
    return 0;
  return qad_write_zeroes (t->path, count, offset, write_zero_piece, t);
}

int
commit_target_sync (struct commit_target *t)
{
  if (t->is_qed)
    return qed_flush (t->qed);
  if (fdatasync (t->fd) == -1) {
    fprintf (stderr, "qad-img: %s: fdatasync: %s\n", t->path,
             strerror (errno));
    return -1;
  }
  return 0;
}

int
commit_target_close (struct commit_target *t)
{
  int r = 0;

  if (t->qed)
    r = qed_close (t->qed);
  if (t->fd >= 0 && close (t->fd) == -1)
    r = -1;
  t->qed = NULL;
  t->fd = -1;
  return r;
}
