/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * In local-image mode the roles of the layers swap: the image is a
 * local raw file and the plugin below is the backing.  Rather than
 * teach copy-up.c, extents.c and addcow.c a second kind of image, the
 * local file is presented through the struct nbdkit_next_ops they
 * already call (image_ops below): local_image_enter hands it to them
 * in place of the plugin.  It is only ever called by this filter's
 * code, never passed to nbdkit.  The plugin below becomes a block
 * device (filters/common/next-dev.c), so the backing reads of the data
 * path go to it unchanged.
 *
 * The local file promises what the data path needs for its
 * durability rules (docs/specs/add-cow.txt, "Durability"): a flush
 * (fdatasync) covers every connection's writes, so the store persists
 * bits at flush (multi-conn); FUA is a write then fdatasync.  After a
 * failed fdatasync the file latches the failure and every later flush
 * and FUA write fails with EIO (the store is poisoned too, by its own
 * callers), because the kernel may have dropped the unwritten pages.
 *
 * The backing is never opened by name: the sidecar records a label
 * (the plugin's url=, uri= or file=, or addcow-backing-label=) only so
 * that reopening the overlay on another backing is refused.
 */

#include <config.h>

#define _GNU_SOURCE 1           /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "fsync-dir.h"
#include "full-io.h"
#include "image-lock.h"
#include "local-image.h"
#include "minmax.h"
#include "next-dev.h"
#include "pieces.h"

/* Set in .config, read-only afterwards. */
static char *image_path;                /* addcow-local-image=, absolute */
static char *label;                     /* addcow-backing-label= */
static char *plugin_label;              /* the plugin's url=, uri= */

/* Set in .get_ready / .after_fork, read-only afterwards. */
static int image_fd = -1;
static uint64_t image_size;

static bool sync_failed;                /* atomic: a fdatasync failed */

/* backing_lock protects backing_dev, the plugin below as a device,
 * made by the first .prepare and closed at unload.
 */
static pthread_mutex_t backing_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qad_blockdev *backing_dev;

bool
local_image_mode (void)
{
  return image_path != NULL;
}

int
local_image_config (const char *key, const char *value)
{
  if (strcmp (key, "addcow-local-image") == 0) {
    free (image_path);
    /* Resolve now: nbdkit chdirs to / when it daemonizes. */
    image_path = nbdkit_absolute_path (value);
    return image_path ? 1 : -1;
  }
  if (strcmp (key, "addcow-backing-label") == 0) {
    free (label);
    label = strdup (value);
    return label ? 1 : -1;
  }
  if (strcmp (key, "url") == 0 || strcmp (key, "uri") == 0) {
    free (plugin_label);
    plugin_label = strdup (value);
    return plugin_label ? 0 : -1;
  }
  return 0;
}

int
local_image_config_complete (struct sidecar_params *p)
{
  const char *l;

  if (!local_image_mode ()) {
    if (label) {
      nbdkit_error ("addcow-backing-label= only has a meaning with "
                    "addcow-local-image=");
      return -1;
    }
    return 0;
  }
  if (p->backing) {
    nbdkit_error ("addcow-local-image=%s: the backing is the plugin below "
                  "the filter, so addcow-backing= cannot be given (name it "
                  "with addcow-backing-label= if you like)", image_path);
    return -1;
  }
  if (p->backing_format && strcmp (p->backing_format, "raw") != 0) {
    nbdkit_error ("addcow-local-image=%s: the plugin below serves the disk "
                  "itself, so its format is raw, not %s (put a format "
                  "filter such as --filter=qed below add-cow)",
                  image_path, p->backing_format);
    return -1;
  }
  l = label ? label : plugin_label ? plugin_label : p->plugin_file;
  if (l == NULL) {
    nbdkit_error ("addcow-local-image=%s: say what the plugin below serves "
                  "with addcow-backing-label=LABEL (recorded in the sidecar, "
                  "so that it is never reopened over another backing)",
                  image_path);
    return -1;
  }
  p->backing = strdup (l);
  free (p->plugin_file);
  p->plugin_file = strdup (image_path);
  if (p->backing == NULL || p->plugin_file == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  p->backing_supplied = true;
  return 0;
}

int
local_image_open (void)
{
  struct stat st;
  bool created = false;

  if (!local_image_mode ())
    return 0;
  image_fd = open (image_path, O_RDWR | O_CLOEXEC);
  if (image_fd == -1 && errno == ENOENT) {
    image_fd = open (image_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    created = image_fd >= 0;
  }
  if (image_fd == -1) {
    nbdkit_error ("addcow-local-image=%s: %m", image_path);
    return -1;
  }
  if (created && qad_fsync_dir_of (image_path) == -1) {
    nbdkit_error ("%s: fsync of its directory: %m", image_path);
    return -1;
  }
  if (qad_lock_image (image_fd, image_path, true) == -1)
    return -1;
  if (fstat (image_fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", image_path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("addcow-local-image=%s: not a regular file", image_path);
    return -1;
  }
  image_size = st.st_size;
  return 0;
}

int
local_image_size_new (nbdkit_next *next, bool sidecar_fresh)
{
  int64_t size;

  if (!local_image_mode () || image_size > 0)
    return 0;
  if (!sidecar_fresh) {
    nbdkit_error ("%s: the local image is empty, but its sidecar already "
                  "has a bitmap: the image was replaced or truncated",
                  image_path);
    return -1;
  }
  size = next->get_size (next);
  if (size == -1)
    return -1;
  if (ftruncate (image_fd, size) == -1 || fdatasync (image_fd) == -1) {
    nbdkit_error ("%s: sizing the new local image to %" PRIi64 " bytes: %m",
                  image_path, size);
    return -1;
  }
  image_size = size;
  nbdkit_debug ("addcow: new local image %s of %" PRIu64 " bytes",
                image_path, image_size);
  return 0;
}

int
local_image_prepare (nbdkit_next *next, struct qad_blockdev **backing)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&backing_lock);

  if (!local_image_mode ())
    return 0;
  if (next_dev_prepare (next) == -1)
    return -1;
  if (backing_dev == NULL) {
    backing_dev = next_dev_open ("the backing served by the plugin", "");
    *backing = backing_dev;
    return backing_dev ? 0 : -1;
  }
  return next_dev_check_size (next, backing_dev->size, backing_dev->name);
}

void
local_image_close (void)
{
  if (image_fd >= 0)
    close (image_fd);
  image_fd = -1;
  qad_blockdev_close (backing_dev);
  backing_dev = NULL;
  free (image_path);
  free (label);
  free (plugin_label);
  image_path = label = plugin_label = NULL;
}

/* ---- the local file as the image (image_ops) ---- */

static int
sync_image (int *err)
{
  if (__atomic_load_n (&sync_failed, __ATOMIC_ACQUIRE)) {
    *err = EIO;
    return -1;
  }
  if (fdatasync (image_fd) == -1) {
    *err = errno;
    __atomic_store_n (&sync_failed, true, __ATOMIC_RELEASE);
    nbdkit_error ("%s: fdatasync: %m (every later flush fails until "
                  "restart)", image_path);
    return -1;
  }
  return 0;
}

static int
image_pread (nbdkit_next *unused, void *buf, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  if (pread_or_zero (image_fd, buf, count, offset) == -1) {
    *err = errno;
    nbdkit_error ("%s: read: %m: offset=%" PRIu64, image_path, offset);
    return -1;
  }
  return 0;
}

static int
image_pwrite (nbdkit_next *unused, const void *buf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  if (full_pwrite (image_fd, buf, count, offset) == -1) {
    *err = errno;
    nbdkit_error ("%s: write: %m: offset=%" PRIu64, image_path, offset);
    return -1;
  }
  return flags & NBDKIT_FLAG_FUA ? sync_image (err) : 0;
}

/* One piece of the zeroes image_zero writes (image_pwrite reports). */
static int
write_zero_piece (void *unused, const void *buf, uint64_t count,
                  uint64_t offset)
{
  int err = 0;

  if (image_pwrite (NULL, buf, count, offset, 0, &err) == -1) {
    errno = err;
    return -1;
  }
  return 0;
}

/* Real zeroes on disk (a punched hole reads as zeroes too). */
static int
image_zero (nbdkit_next *unused, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  int mode = flags & NBDKIT_FLAG_MAY_TRIM
    ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;

  if (fallocate (image_fd, mode, offset, count) == 0)
    return flags & NBDKIT_FLAG_FUA ? sync_image (err) : 0;
  if (errno != EOPNOTSUPP && errno != ENOSYS) {
    *err = errno;
    nbdkit_error ("%s: zero: %m: offset=%" PRIu64, image_path, offset);
    return -1;
  }
  if (qad_write_zeroes (image_path, count, offset, write_zero_piece,
                        NULL) == -1) {
    *err = errno;
    return -1;
  }
  return flags & NBDKIT_FLAG_FUA ? sync_image (err) : 0;
}

/* Advisory: the filter trims only clusters the image holds. */
static int
image_trim (nbdkit_next *unused, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  if (fallocate (image_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 offset, count) == -1 &&
      errno != EOPNOTSUPP && errno != ENOSYS) {
    *err = errno;
    nbdkit_error ("%s: trim: %m: offset=%" PRIu64, image_path, offset);
    return -1;
  }
  return flags & NBDKIT_FLAG_FUA ? sync_image (err) : 0;
}

static int
image_flush (nbdkit_next *unused, uint32_t flags, int *err)
{
  return sync_image (err);
}

/* Data, or a hole reading as zeroes, from SEEK_DATA / SEEK_HOLE. */
static int
image_extents (nbdkit_next *unused, uint32_t count, uint64_t offset,
               uint32_t flags, struct nbdkit_extents *extents, int *err)
{
  uint64_t end = offset + count;

  while (offset < end) {
    off_t data = lseek (image_fd, offset, SEEK_DATA), next;
    uint32_t type = 0;

    if (data == -1 && errno == ENXIO)
      data = end;               /* a hole to the end of the file */
    else if (data == -1) {
      *err = errno;
      nbdkit_error ("%s: lseek: %m: offset=%" PRIu64, image_path, offset);
      return -1;
    }
    if ((uint64_t) data > offset) {
      next = MIN ((uint64_t) data, end);
      type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
    }
    else {
      next = lseek (image_fd, offset, SEEK_HOLE);
      if (next == -1) {
        *err = errno;
        nbdkit_error ("%s: lseek: %m: offset=%" PRIu64, image_path, offset);
        return -1;
      }
      next = MIN ((uint64_t) next, end);
    }
    if (nbdkit_add_extent (extents, offset, next - offset, type) == -1) {
      *err = errno;
      return -1;
    }
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
    offset = next;
  }
  return 0;
}

static int64_t
image_get_size (nbdkit_next *unused)
{
  return image_size;
}

static int
image_block_size (nbdkit_next *unused, uint32_t *minimum,
                  uint32_t *preferred, uint32_t *maximum)
{
  *minimum = *preferred = *maximum = 0;   /* no constraints */
  return 0;
}

static int
image_nothing_to_do (nbdkit_next *unused)
{
  return 0;
}

static int
image_true (nbdkit_next *unused)
{
  return 1;
}

static int
image_false (nbdkit_next *unused)
{
  return 0;
}

static int
image_can_zero (nbdkit_next *unused)
{
  return NBDKIT_ZERO_NATIVE;
}

static int
image_can_fua (nbdkit_next *unused)
{
  return NBDKIT_FUA_NATIVE;
}

static const char *
image_export_description (nbdkit_next *unused)
{
  return NULL;
}

static int
image_cache (nbdkit_next *unused, uint32_t count, uint64_t offset,
             uint32_t flags, int *err)
{
  return 0;
}

static struct nbdkit_next_ops image_ops = {
  .prepare = image_nothing_to_do,
  .finalize = image_nothing_to_do,
  .get_size = image_get_size,
  .export_description = image_export_description,
  .block_size = image_block_size,
  .can_write = image_true,
  .can_flush = image_true,
  .is_rotational = image_false,
  .can_trim = image_true,
  .can_zero = image_can_zero,
  .can_fast_zero = image_false, /* a fast zero is refused, never tried */
  .can_extents = image_true,
  .can_fua = image_can_fua,
  .can_multi_conn = image_true, /* fdatasync covers every writer */
  .can_cache = image_false,
  .pread = image_pread,
  .pwrite = image_pwrite,
  .flush = image_flush,
  .trim = image_trim,
  .zero = image_zero,
  .extents = image_extents,
  .cache = image_cache,
};

nbdkit_next *
local_image_enter (nbdkit_next *next)
{
  if (!local_image_mode ())
    return next;
  next_dev_enter (next);
  return &image_ops;
}
