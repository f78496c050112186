/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* An add-cow crash state: the sidecar must pass the library's check
 * (header valid, bitmap consistent with the image), then the disk is
 * what the format says: a cluster whose bit is 1 (or every cluster,
 * with ALL_ALLOCATED) reads from the raw image, a cluster whose bit is
 * 0 from the backing file (zeroes past its end).
 */

#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-check.h"
#include "addcow-file.h"
#include "pc-object.h"

static void
problem (void *opaque, const char *msg)
{
  char *first = opaque;
  if (first[0] == '\0')
    snprintf (first, 512, "%s", msg);
}

static int
addcow_state_read (struct pc_log *lg, const char *work, uint8_t *disk,
                   uint64_t size, const uint8_t *init, char *msg,
                   size_t len)
{
  char side[4096], base[4096], first[512] = "";
  struct addcow_check_result res;
  struct addcow_header h;
  const uint8_t *raw, *bk = NULL;
  size_t rawlen, bklen = 0;
  uint64_t file_size, bmlen, cs, c;
  uint8_t *bm = NULL;
  bool fresh, all;
  int fd, r = -1;

  snprintf (base, sizeof base, "%s/base.raw", work);
  if (access (base, F_OK) == -1 &&
      pc_put_file (lg, work, "base.raw", msg, len) == -1)
    return -1;
  if (pc_put_file (lg, work, "disk.raw", msg, len) == -1 ||
      pc_put_file (lg, work, "disk.add-cow", msg, len) == -1)
    return -1;
  if (!pc_state_file (lg, "disk.raw", &raw, &rawlen) ||
      !pc_state_file (lg, "disk.add-cow", &bk, &bklen)) {
    snprintf (msg, len, "disk.raw or disk.add-cow is missing");
    return -2;
  }
  if (rawlen != size) {
    snprintf (msg, len, "disk.raw has %zu bytes, expected %" PRIu64,
              rawlen, size);
    return -1;
  }
  snprintf (side, sizeof side, "%s/disk.add-cow", work);
  if (addcow_check (side, false, problem, first, &res) == -1) {
    snprintf (msg, len, "check failed: %s", pc_last_error ());
    return -1;
  }
  if (res.corruptions) {
    snprintf (msg, len, "check: %" PRIu64 " problems: %s",
              res.corruptions, first);
    return -1;
  }

  fd = open (side, O_RDONLY|O_CLOEXEC);
  if (fd == -1 || addcow_read_header (fd, side, &h, &file_size) == -1) {
    snprintf (msg, len, "header: %s", pc_last_error ());
    if (fd >= 0)
      close (fd);
    return -1;
  }
  if (addcow_load_bitmap (fd, side, &h, file_size, size, &bm, &bmlen,
                          &fresh) == -1) {
    snprintf (msg, len, "bitmap: %s", pc_last_error ());
    goto out;
  }
  bk = NULL;
  bklen = 0;
  if (h.backing_file &&
      !pc_state_file (lg, h.backing_file, &bk, &bklen)) {
    snprintf (msg, len, "backing file %s is missing", h.backing_file);
    goto out;
  }
  all = (h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) != 0;
  cs = UINT64_C (1) << h.cluster_bits;
  for (c = 0; c * cs < size; ++c) {
    uint64_t off = c * cs, n = size - off < cs ? size - off : cs;
    if (all || bit_test (bm, c))
      memcpy (disk + off, raw + off, n);
    else
      pc_copy_out (bk, bklen, disk + off, off, n);
  }
  r = 0;
 out:
  free (bm);
  addcow_header_free (&h);
  close (fd);
  return r;
}

const struct pc_object pc_object_addcow = {
  .name = "addcow",
  .read = addcow_state_read,
};
