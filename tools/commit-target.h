/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The backing file qad-img commit writes into: a raw file or a QED
 * image, opened read-write under the image lock (commit-target.c).
 */

#ifndef QAD_COMMIT_TARGET_H
#define QAD_COMMIT_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backing-policy.h"

struct qed_image;

struct commit_target {
  const char *path;
  bool is_qed;
  int fd;                       /* raw: the file, locked */
  struct qed_image *qed;        /* qed: the image, opened read-write */
  uint64_t size;                /* guest size */
};

/* Open PATH, recorded as NAME in the image IMAGE, as FORMAT ("raw",
 * "qed", or NULL to probe as QED does: QED magic, else raw), checked
 * against RULES and refused when it is the file OVERLAY_FD (any name
 * of it) or carries the magic of an image format we cannot write.
 * Returns 0, or -1 after a message.
 */
extern int commit_target_open (struct commit_target *t, const char *image,
                               const char *name, const char *path,
                               const char *format,
                               const struct qad_backing_rules *rules,
                               int overlay_fd);

/* Make the target at least SIZE bytes; the new area reads zeroes. */
extern int commit_target_grow (struct commit_target *t, uint64_t size);
extern int commit_target_write (struct commit_target *t, const void *buf,
                                uint64_t count, uint64_t offset);
extern int commit_target_zero (struct commit_target *t, uint64_t count,
                               uint64_t offset);
/* Everything written so far durable. */
extern int commit_target_sync (struct commit_target *t);
extern int commit_target_close (struct commit_target *t);

#endif /* QAD_COMMIT_TARGET_H */
