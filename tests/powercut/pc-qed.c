/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A QED crash state, reopened as the plugin opens it.
 *
 * An image without NEED_CHECK must pass the consistency check with no
 * corruption (leaks are allowed, as qemu-img check allows them).  An
 * image with NEED_CHECK may hold corruption that only an allocating
 * write in flight could cause (an L2 entry pointing at a cluster whose
 * write was lost): QEMU's design, the plugin repairs it on open.  So
 * it is repaired as the plugin does, and the check after the repair
 * must find no corruption.  Then the disk is read through the
 * library's read path (with the backing file); the data invariants
 * (pc-expect.c) catch a repair that threw away a flushed write.
 */



#include <config.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "pc-object.h"
#include "qed-check.h"
#include "qed-image.h"

static uint64_t repairs;

static int
qed_state_read (struct pc_log *lg, const char *work, uint8_t *disk,
                uint64_t size, const uint8_t *init, char *msg, size_t len)
{
  char path[4096], base[4096];
  struct qed_open_options opts = { .readonly = false, .lock = false };
  struct qed_check_result res;
  struct qed_image *img;
  const uint8_t *data;
  size_t dlen;
  int r = -1;

  if (!pc_state_file (lg, "disk.qed", &data, &dlen)) {
    snprintf (msg, len, "disk.qed is missing");
    return -2;
  }
  snprintf (base, sizeof base, "%s/base.raw", work);
  if (access (base, F_OK) == -1 &&
      pc_put_file (lg, work, "base.raw", msg, len) == -1)
    return -1;
  if (pc_put_file (lg, work, "disk.qed", msg, len) == -1)
    return -1;
  snprintf (path, sizeof path, "%s/disk.qed", work);
  img = qed_open (path, &opts);
  if (img == NULL) {
    snprintf (msg, len, "does not open: %s", pc_last_error ());
    return -1;
  }
  if (qed_check (img, false, &res, NULL, NULL) == -1) {
    snprintf (msg, len, "check failed: %s", pc_last_error ());
    goto out;
  }
  if (res.corruptions && !res.need_check) {
    snprintf (msg, len, "check: %" PRIu64 " corruptions (%" PRIu64
              " leaks) without NEED_CHECK", res.corruptions, res.leaks);
    goto out;
  }
  if (res.need_check) {
    if (res.corruptions && init)
      repairs++;
    if (qed_check (img, true, &res, NULL, NULL) == -1) {
      snprintf (msg, len, "repair failed: %s", pc_last_error ());
      goto out;
    }
    if (qed_check (img, false, &res, NULL, NULL) == -1 ||
        res.corruptions) {
      snprintf (msg, len, "check after the repair on open: %" PRIu64
                " corruptions %s", res.corruptions, pc_last_error ());
      goto out;
    }
  }
  if (img->dev.size != size) {
    snprintf (msg, len, "size %" PRIu64 ", expected %" PRIu64,
              img->dev.size, size);
    goto out;
  }
  if (qed_pread (img, disk, size, 0) == -1) {
    snprintf (msg, len, "read failed: %s", pc_last_error ());
    goto out;
  }
  r = 0;
 out:
  qed_close (img);
  return r;
}

const struct pc_object pc_object_qed = {
  .name = "qed",
  .read = qed_state_read,
  .repairs = &repairs,
};
