/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The raw-file block device.  Extents come from SEEK_DATA/SEEK_HOLE
 * so that a sparse raw backing file stays sparse through us.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "full-io.h"
#include "minmax.h"
#include "qad-error.h"

struct raw_dev {
  struct qad_blockdev dev;
  int fd;
};

void
qad_blockdev_close (struct qad_blockdev *dev)
{
  if (dev)
    dev->ops->close (dev);
}

static int
raw_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
           uint64_t offset)
{
  struct raw_dev *r = (struct raw_dev *) dev;

  /* The file may have shrunk since it was opened: zeroes, not EIO. */
  if (pread_or_zero (r->fd, buf, count, offset) == -1) {
    qad_error ("%s: read failed: offset=%" PRIu64 " count=%" PRIu64 ": %m",
               dev->name, offset, count);
    return -1;
  }
  return 0;
}

static int
raw_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
            uint64_t *len, uint32_t *flags)
{
  struct raw_dev *r = (struct raw_dev *) dev;
  off_t pos;

  if (offset >= dev->size) {
    *len = max;
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  max = MIN (max, dev->size - offset);

  pos = lseek (r->fd, offset, SEEK_DATA);
  if (pos == -1 && errno == ENXIO) {
    /* No data from here to EOF. */
    *len = max;
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  if (pos == -1) {
    /* Filesystem without SEEK_DATA: everything is data. */
    *len = max;
    *flags = 0;
    return 0;
  }
  if ((uint64_t) pos > offset) {
    *len = MIN (max, (uint64_t) pos - offset);
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  pos = lseek (r->fd, offset, SEEK_HOLE);
  if (pos == -1 || (uint64_t) pos <= offset)
    *len = max;
  else
    *len = MIN (max, (uint64_t) pos - offset);
  *flags = 0;
  return 0;
}

static void
raw_close (struct qad_blockdev *dev)
{
  struct raw_dev *r = (struct raw_dev *) dev;

  close (r->fd);
  free (dev->name);
  free (r);
}

static const struct qad_blockdev_ops raw_ops = {
  .pread = raw_pread,
  .extent = raw_extent,
  .close = raw_close,
};

struct qad_blockdev *
qad_raw_open_fd (int fd, const char *name)
{
  struct raw_dev *r;
  struct stat st;

  if (fstat (fd, &st) == -1) {
    qad_error ("%s: fstat: %m", name);
    close (fd);
    return NULL;
  }
  r = calloc (1, sizeof *r);
  if (r == NULL || (r->dev.name = strdup (name)) == NULL) {
    qad_error ("%s: %m", name);
    free (r);
    close (fd);
    return NULL;
  }
  r->fd = fd;
  r->dev.ops = &raw_ops;
  if (S_ISBLK (st.st_mode)) {
    off_t end = lseek (fd, 0, SEEK_END);
    r->dev.size = end == -1 ? 0 : end;
  }
  else
    r->dev.size = st.st_size;
  return &r->dev;
}

struct qad_blockdev *
qad_raw_open (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    qad_error ("%s: cannot open backing file: %m", path);
    return NULL;
  }
  return qad_raw_open_fd (fd, path);
}
