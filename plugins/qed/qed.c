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
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "backing-policy.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qed-check.h"
#include "qed-image.h"

static char *filename;                  /* file=, absolute */
static uint64_t l2_cache_bytes;         /* l2-cache-size=, 0 = default */
static bool readonly_param;             /* readonly=true */
static enum { CHECK_AUTO, CHECK_ON, CHECK_OFF } check_mode = CHECK_AUTO;
static enum qad_backing_policy backing_policy;  /* backing-policy= */
static char *backing_dir;               /* backing-dir=, canonical */
static struct qad_backing_rules rules;  /* set in .get_ready */
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
  /* A final flush; clears NEED_CHECK after a clean shutdown.  After a
   * failed fdatasync (common/qed poisons the image) it is refused.
   */
  bool poisoned = img && qed_poisoned (img);
  if (qed_close (img) == -1)
    nbdkit_debug ("%s: final flush %s: NEED_CHECK (if set) stays set",
                  filename, poisoned ? "refused after a failed fdatasync"
                  : "failed");
  img = NULL;
  qad_backing_rules_free (&rules);
  free (backing_dir);
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
  else if (strcmp (key, "readonly") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    readonly_param = r;
  }
  else if (strcmp (key, "check") == 0) {
    if (strcmp (value, "auto") == 0)
      check_mode = CHECK_AUTO;
    else if (strcmp (value, "on") == 0)
      check_mode = CHECK_ON;
    else if (strcmp (value, "off") == 0)
      check_mode = CHECK_OFF;
    else {
      nbdkit_error ("check=%s: must be auto, on or off", value);
      return -1;
    }
  }
  else if (strcmp (key, "backing-policy") == 0) {
    if (qad_backing_policy_parse (value, &backing_policy) == -1) {
      nbdkit_error ("backing-policy=%s: must be follow, inside or refuse",
                    value);
      return -1;
    }
  }
  else if (strcmp (key, "backing-dir") == 0) {
    free (backing_dir);
    /* Resolve now: nbdkit chdirs to / when it daemonizes. */
    backing_dir = nbdkit_realpath (value);
    if (backing_dir == NULL)
      return -1;
  }
  else if (strcmp (key, "max-table-size") == 0)
    return qad_set_limit (key, value, nbdkit_parse_size (value),
                          &qad_limits.max_table_bytes);
  else if (strcmp (key, "max-bitmap-size") == 0)
    return qad_set_limit (key, value, nbdkit_parse_size (value),
                          &qad_limits.max_bitmap_bytes);
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
  if (backing_dir && backing_policy != QAD_BACKING_INSIDE) {
    nbdkit_error ("backing-dir= only has a meaning with "
                  "backing-policy=inside");
    return -1;
  }
  return 0;
}

#define qed_plugin_config_help \
  "file=<FILENAME>       (required) The QED image to serve.\n" \
  "l2-cache-size=<SIZE>  L2 table cache size (default 32M).\n" \
  "check=auto|on|off     Consistency check on open (default auto).\n" \
  "readonly=true         Open the image read-only.\n" \
  "backing-policy=follow|inside|refuse  Which backing files the image\n" \
  "                      may open (default follow).\n" \
  "backing-dir=<DIR>     Also allowed by backing-policy=inside.\n" \
  "max-table-size=<SIZE> Largest L1/L2 table accepted (default 32M).\n" \
  "max-bitmap-size=<SIZE> Largest check cluster map (default 256M)."

static void
report_to_debug (void *opaque, const char *msg)
{
  nbdkit_debug ("check: %s", msg);
}

/* The consistency check on open: with check=auto when the image says
 * NEED_CHECK, always with check=on.  Read-write opens repair.
 */
static int
check_on_open (void)
{
  struct qed_check_result res;
  bool need = (img->header.features & QED_F_NEED_CHECK) != 0;

  if (check_mode == CHECK_OFF || (check_mode == CHECK_AUTO && !need))
    return 0;
  nbdkit_debug ("%s: running the consistency check%s%s", filename,
                need ? " (NEED_CHECK is set)" : "",
                img->readonly ? "" : " with repair");
  if (qed_check (img, !img->readonly, &res, report_to_debug, NULL) == -1)
    return -1;
  nbdkit_debug ("%s: check: %" PRIu64 " corruptions (%" PRIu64 " fixed), %"
                PRIu64 " leaks (%" PRIu64 " reclaimed, %" PRIu64
                " punched)", filename, res.corruptions,
                res.corruptions_fixed, res.leaks, res.leaks_fixed,
                res.leaks_punched);
  if (res.corruptions > res.corruptions_fixed) {
    nbdkit_error ("%s: the image is corrupt (%" PRIu64 " errors); run "
                  "\"qad-img check --repair\" or serve it read-write with "
                  "check=on", filename, res.corruptions);
    return -1;
  }
  return 0;
}

static int
qed_plugin_get_ready (void)
{
  struct qed_open_options opts = {
    .readonly = readonly_param || access (filename, W_OK) == -1,
    .l2_cache_bytes = l2_cache_bytes,
    .lock = true,
    .backing_rules = &rules,
  };

  if (qad_backing_rules_init (&rules, backing_policy, backing_dir,
                              filename) == -1)
    return -1;

  /* nbdkit does not tell plugins about -r before the first connection,
   * so the image is opened read-write whenever it can be (use
   * readonly=true to avoid that).
   */
  img = qed_open (filename, &opts);
  if (img == NULL)
    return -1;
  if (!img->readonly && qed_clear_autoclear (img) == -1)
    return -1;
  return check_on_open ();
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
  return !img->readonly;
}

static int
qed_plugin_can_flush (void *handle)
{
  return 1;
}

static int
qed_plugin_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
qed_plugin_can_trim (void *handle)
{
  return 1;
}

static int
qed_plugin_can_zero (void *handle)
{
  return 1;
}

static int
qed_plugin_can_fast_zero (void *handle)
{
  /* Zeroing whole clusters only touches metadata; partial clusters
   * over a backing file would need data, and fail with ENOTSUP.
   */
  return 1;
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
qed_plugin_pwrite (void *handle, const void *buf, uint32_t count,
                   uint64_t offset, uint32_t flags)
{
  return qed_pwrite (img, buf, count, offset, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_zero (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  return qed_zero (img, count, offset, flags & NBDKIT_FLAG_MAY_TRIM,
                   flags & NBDKIT_FLAG_FAST_ZERO, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_trim (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  return qed_trim (img, count, offset, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_flush (void *handle, uint32_t flags)
{
  return qed_flush (img);
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
  .can_flush         = qed_plugin_can_flush,
  .can_fua           = qed_plugin_can_fua,
  .can_trim          = qed_plugin_can_trim,
  .can_zero          = qed_plugin_can_zero,
  .can_fast_zero     = qed_plugin_can_fast_zero,
  .can_multi_conn    = qed_plugin_can_multi_conn,
  .can_extents       = qed_plugin_can_extents,
  .can_cache         = qed_plugin_can_cache,
  .pread             = qed_plugin_pread,
  .pwrite            = qed_plugin_pwrite,
  .zero              = qed_plugin_zero,
  .trim              = qed_plugin_trim,
  .flush             = qed_plugin_flush,
  .extents           = qed_plugin_extents,
  .errno_is_preserved = 1,
};

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
NBDKIT_REGISTER_PLUGIN (plugin)
