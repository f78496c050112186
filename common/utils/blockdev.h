/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A read-only block device: what a backing file looks like to the
 * code that reads through it.  Implementations: a raw file (here), a
 * QED image with its own backing chain (common/qed), and an NBD
 * export (filters/addcow, with libnbd).
 *
 * Reads past the device's size return zeroes: backing files may be
 * smaller than the image on top of them.
 */

#ifndef QAD_BLOCKDEV_H
#define QAD_BLOCKDEV_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Extent flags, with the same meaning as NBD's base:allocation. */
#define QAD_EXTENT_HOLE 1       /* not allocated */
#define QAD_EXTENT_ZERO 2       /* reads as zeroes */

struct qad_blockdev;

struct qad_blockdev_ops {
  /* Read COUNT bytes at OFFSET, all inside the device (the wrapper
   * qad_blockdev_pread handles the part past the size).
   */
  int (*pread) (struct qad_blockdev *dev, void *buf, uint64_t count,
                uint64_t offset);
  /* Describe the extent starting at OFFSET: *LEN (1..MAX bytes) share
   * *FLAGS.  Past the size: HOLE|ZERO.
   */
  int (*extent) (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
                 uint64_t *len, uint32_t *flags);
  void (*close) (struct qad_blockdev *dev);
};

struct qad_blockdev {
  const struct qad_blockdev_ops *ops;
  uint64_t size;
  char *name;                   /* for error messages (owned) */
};

/* Read COUNT bytes at OFFSET; bytes past the size read as zero. */
static inline int
qad_blockdev_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
                    uint64_t offset)
{
  uint64_t inside = 0;

  if (offset < dev->size)
    inside = dev->size - offset < count ? dev->size - offset : count;
  if (inside > 0 && dev->ops->pread (dev, buf, inside, offset) == -1)
    return -1;
  memset ((char *) buf + inside, 0, count - inside);
  return 0;
}

static inline int
qad_blockdev_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
                     uint64_t *len, uint32_t *flags)
{
  return dev->ops->extent (dev, offset, max, len, flags);
}

extern void qad_blockdev_close (struct qad_blockdev *dev);

/* Open PATH read-only as a raw device.  Errors name PATH. */
extern struct qad_blockdev *qad_raw_open (const char *path);

/* Open a raw device on an already open descriptor (takes ownership). */
extern struct qad_blockdev *qad_raw_open_fd (int fd, const char *name);

#endif /* QAD_BLOCKDEV_H */
