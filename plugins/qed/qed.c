/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit-qed-plugin: serve a QED image.  Thin glue over common/qed:
 * this file knows NBD, common/qed knows QED.
 *
 * Notes on the design:
 *
 * The image is opened once, in .get_ready, and shared by every
 * connection (thread model PARALLEL: common/qed does its own locking).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "qad-error.h"
#include "qed-image.h"

static char *filename;                  /* file=, absolute */
static uint64_t l2_cache_bytes;         /* l2-cache-size=, 0 = default */
static struct qed_image *img;

static void
error_to_nbdkit (const char *msg)
{
  nbdkit_error ("%s", msg);
}

static void
qed_plugin_load (void)
{
  qad_set_error_handler (error_to_nbdkit);
}

static void
qed_plugin_unload (void)
{
  qed_close (img);
  img = NULL;
  free (filename);
}

static int
qed_plugin_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (filename);
    /* Resolve now: nbdkit chdirs to / when it daemonizes. */
    filename = nbdkit_realpath (value);
    if (filename == NULL)
      return -1;
  }
  else if (strcmp (key, "l2-cache-size") == 0) {
    int64_t r = nbdkit_parse_size (value);
    if (r == -1)
      return -1;
    if (r < 4096) {
      nbdkit_error ("l2-cache-size=%s: must be at least 4K", value);
      return -1;
    }
    l2_cache_bytes = r;
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

static int
qed_plugin_config_complete (void)
{
  if (filename == NULL) {
    nbdkit_error ("you must supply the file=<FILENAME> parameter "
                  "(the QED image to serve)");
    return -1;
  }
  return 0;
}

#define qed_plugin_config_help \
  "file=<FILENAME>     (required) The QED image to serve.\n" \
  "l2-cache-size=<SIZE>  L2 table cache size (default 32M)."

static int
qed_plugin_get_ready (void)
{
  struct qed_open_options opts = {
    .readonly = true,
    .l2_cache_bytes = l2_cache_bytes,
  };

  img = qed_open (filename, &opts);
  return img ? 0 : -1;
}

static void *
qed_plugin_open (int readonly)
{
  /* All state is global; a non-NULL handle is all nbdkit needs. */
  return img;
}

static int64_t
qed_plugin_get_size (void *handle)
{
  return img->dev.size;
}

static int
qed_plugin_can_write (void *handle)
{
  return 0;
}

static int
qed_plugin_can_multi_conn (void *handle)
{
  return 1;
}

static int
qed_plugin_can_extents (void *handle)
{
  return 1;
}

static int
qed_plugin_can_cache (void *handle)
{
  /* Reading is all a cache request could do. */
  return NBDKIT_CACHE_EMULATE;
}

static int
qed_plugin_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  return qed_pread (img, buf, count, offset);
}

static int
qed_plugin_extents (void *handle, uint32_t count, uint64_t offset,
                    uint32_t flags, struct nbdkit_extents *extents)
{
  uint64_t end = offset + count;

  while (offset < end) {
    uint64_t len;
    uint32_t type;

    if (qed_extent (img, offset, end - offset, &len, &type) == -1)
      return -1;
    if (nbdkit_add_extent (extents, offset, len, type) == -1)
      return -1;
    offset += len;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name              = "qed",
  .longname          = "nbdkit QED plugin",
  .version           = PACKAGE_VERSION,
  .load              = qed_plugin_load,
  .unload            = qed_plugin_unload,
  .config            = qed_plugin_config,
  .config_complete   = qed_plugin_config_complete,
  .config_help       = qed_plugin_config_help,
  .magic_config_key  = "file",
  .get_ready         = qed_plugin_get_ready,
  .open              = qed_plugin_open,
  .get_size          = qed_plugin_get_size,
  .can_write         = qed_plugin_can_write,
  .can_multi_conn    = qed_plugin_can_multi_conn,
  .can_extents       = qed_plugin_can_extents,
  .can_cache         = qed_plugin_can_cache,
  .pread             = qed_plugin_pread,
  .extents           = qed_plugin_extents,
  .errno_is_preserved = 1,
};

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
NBDKIT_REGISTER_PLUGIN (plugin)
