/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Creating an image, laid out as qemu-img lays it out: the header in
 * cluster 0 (more clusters if the backing name needs them), the name
 * right after the 64-byte header, then an empty L1 table.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "full-io.h"
#include "image-lock.h"
#include "qad-error.h"
#include "qed-create.h"
#include "qed-image.h"
#include "rounding.h"

int
qed_create (const char *filename, const struct qed_create_options *opts)
{
  struct qed_header h = {
    .cluster_size = opts->cluster_size ? opts->cluster_size
                                       : QED_DEFAULT_CLUSTER_SIZE,
    .table_size = opts->table_size ? opts->table_size
                                   : QED_DEFAULT_TABLE_SIZE,
    .image_size = opts->size,
  };
  struct qed_geometry g;
  size_t name_len = opts->backing ? strlen (opts->backing) : 0;
  uint64_t header_bytes, file_size;
  CLEANUP_FREE unsigned char *buf = NULL;
  int fd;

  if (opts->backing) {
    struct qad_blockdev *b;
    CLEANUP_FREE char *path = NULL;
    uint64_t backing_features;

    if (name_len == 0 || name_len > QED_MAX_BACKING_NAME) {
      qad_error ("%s: backing file name must be 1 to %d bytes",
                 filename, QED_MAX_BACKING_NAME);
      errno = EINVAL;
      return -1;
    }
    if (qed_backing_format_features (filename, opts->backing_format,
                                     &backing_features) == -1)
      return -1;
    /* Open the backing file as the image will: it must exist, and it
     * gives the default size.
     */
    path = qed_resolve_backing_name (filename, opts->backing);
    if (path == NULL)
      return -1;
    b = qed_open_backing_checked (filename, opts->backing, path,
                                  opts->backing_format, false,
                                  opts->backing_rules, NULL, 0);
    if (b == NULL)
      return -1;
    if (h.image_size == 0)
      h.image_size = ROUND_UP (b->size, UINT64_C (512));
    qad_blockdev_close (b);
    h.features |= backing_features;
    h.backing_name_offset = QED_HEADER_BYTES;
    h.backing_name_size = name_len;
  }

  header_bytes = ROUND_UP ((uint64_t) QED_HEADER_BYTES + name_len,
                           (uint64_t) h.cluster_size);
  h.header_size = header_bytes / h.cluster_size;
  h.l1_table_offset = header_bytes;
  file_size = header_bytes + (uint64_t) h.table_size * h.cluster_size;
  if (qed_header_validate (filename, &h, file_size, &g) == -1)
    return -1;

  buf = calloc (1, header_bytes);
  if (buf == NULL) {
    qad_error ("%s: %m", filename);
    return -1;
  }
  qed_header_encode (&h, buf);
  if (name_len)
    memcpy (buf + QED_HEADER_BYTES, opts->backing, name_len);

  fd = open (filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd == -1) {
    qad_error ("%s: cannot create: %m", filename);
    return -1;
  }
  /* Never overwrite an image someone is using. */
  if (qad_lock_image (fd, filename, true) == -1 ||
      ftruncate (fd, 0) == -1 ||
      full_pwrite (fd, buf, header_bytes, 0) == -1 ||
      ftruncate (fd, file_size) == -1 ||
      fsync (fd) == -1) {
    if (errno != EAGAIN)
      qad_error ("%s: cannot write the new image: %m", filename);
    close (fd);
    return -1;
  }
  if (close (fd) == -1) {
    qad_error ("%s: close: %m", filename);
    return -1;
  }
  return 0;
}
