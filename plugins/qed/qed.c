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
 *
 * nbdkit 1.32 tells a plugin about -r only in .open, so the image is
 * opened read-only in .get_ready and made writable by the first
 * connection that wants to write (upgrade_to_readwrite): with -r the
 * file is never written, not even to repair an image left with
 * NEED_CHECK or to clear autoclear bits.  The repair runs at the
 * upgrade, under upgrade_lock taken for writing, so no read of another
 * connection sees the tables change under it.  Once the image is
 * writable (or can never become so) "settled" is set and requests stop
 * taking the lock.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "backing-policy.h"
#include "minmax.h"
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

/* -D qed.map=1: log how each read maps onto the image file. */
NBDKIT_DLL_PUBLIC int qed_debug_map;

/* Taken for reading by every request and for writing by the upgrade,
 * until "settled" (read with acquire, set with release) says no
 * upgrade can happen any more.
 */
static pthread_rwlock_t upgrade_lock = PTHREAD_RWLOCK_INITIALIZER;
static bool settled;
static bool can_upgrade;        /* the file may be written later */
static bool startup_corrupt;    /* the startup check found corruption */
static bool upgrade_failed;     /* reopened read-write, then failed */

/* Has nbdkit pointed stderr at /dev/null (it does when it forks into
 * the background and logs to syslog)?
 */
static bool
stderr_is_devnull (void)
{
  struct stat a, b;

  return fstat (STDERR_FILENO, &a) == 0 && stat ("/dev/null", &b) == 0 &&
    S_ISCHR (a.st_mode) && a.st_rdev == b.st_rdev;
}

/* One line the user sees at normal verbosity.  nbdkit 1.32 has no
 * notice level (nbdkit_error would call it an error), so it goes to
 * stderr; only when stderr leads nowhere (a daemon logging to syslog)
 * through nbdkit_error, which reaches the log.
 */
static void __attribute__ ((format (printf, 1, 2)))
notice (const char *fs, ...)
{
  va_list args;

  va_start (args, fs);
  if (stderr_is_devnull ())
    nbdkit_verror (fs, args);
  else {
    flockfile (stderr);
    fprintf (stderr, "nbdkit: qed: notice: ");
    vfprintf (stderr, fs, args);
    fprintf (stderr, "\n");
    funlockfile (stderr);
  }
  va_end (args);
}

static bool
enter (void)
{
  if (__atomic_load_n (&settled, __ATOMIC_ACQUIRE))
    return false;
  pthread_rwlock_rdlock (&upgrade_lock);
  return true;
}

static void
leave (bool *locked)
{
  if (*locked)
    pthread_rwlock_unlock (&upgrade_lock);
}

/* Hold upgrade_lock for reading while the image may still change. */
#define IMAGE_STABLE_FOR_CURRENT_SCOPE \
  __attribute__ ((cleanup (leave), unused)) bool locked_ = enter ()

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

/* Is the consistency check due: with check=auto when the image says
 * NEED_CHECK, always with check=on.
 */
static bool
check_due (void)
{
  bool need = (img->header.features & QED_F_NEED_CHECK) != 0;

  return check_mode == CHECK_ON || (check_mode == CHECK_AUTO && need);
}

/* The consistency check, repairing when the image is writable.  At
 * startup (read-only) a corrupt image is refused only when it can
 * never be repaired here; otherwise the first writable connection
 * repairs it.
 */
static int
run_check (void)
{
  struct qed_check_result res;
  bool repair = !img->readonly;

  nbdkit_debug ("%s: running the consistency check%s%s", filename,
                img->header.features & QED_F_NEED_CHECK ?
                " (NEED_CHECK is set)" : "",
                repair ? " with repair" : "");
  if (qed_check (img, repair, &res, report_to_debug, NULL) == -1)
    return -1;
  nbdkit_debug ("%s: check: %" PRIu64 " corruptions (%" PRIu64 " fixed), %"
                PRIu64 " leaks (%" PRIu64 " reclaimed, %" PRIu64
                " punched)", filename, res.corruptions,
                res.corruptions_fixed, res.leaks, res.leaks_fixed,
                res.leaks_punched);
  if (repair && (res.corruptions_fixed || res.leaks_fixed ||
                 res.leaks_punched))
    notice ("%s: repaired: %" PRIu64 " corruptions fixed, %" PRIu64
            " leaked clusters reclaimed, %" PRIu64 " punched",
            filename, res.corruptions_fixed, res.leaks_fixed,
            res.leaks_punched);
  if (qed_check_corruptions_left (&res) > 0) {
    if (!repair && can_upgrade) {
      notice ("%s: the image is corrupt (%" PRIu64 " errors): served "
              "read-only until a writable connection repairs it",
              filename, res.corruptions);
      startup_corrupt = true;
      return 0;
    }
    nbdkit_error ("%s: the image is corrupt (%" PRIu64 " errors); run "
                  "\"qad-img check -r all\" or serve it read-write with "
                  "check=on", filename,
                  qed_check_corruptions_left (&res));
    return -1;
  }
  return 0;
}

static int
qed_plugin_get_ready (void)
{
  struct qed_open_options opts = {
    .readonly = true,
    .l2_cache_bytes = l2_cache_bytes,
    .lock = true,
    .backing_rules = &rules,
  };

  if (qad_backing_rules_init (&rules, backing_policy, backing_dir,
                              filename) == -1)
    return -1;

  /* Probe with open(2), not access(2): root passes access() on a file
   * that is immutable or on a read-only mount.
   */
  if (!readonly_param) {
    int fd = open (filename, O_RDWR | O_CLOEXEC);

    if (fd >= 0) {
      close (fd);
      can_upgrade = true;
    }
    else
      notice ("%s: cannot be opened for writing (%m): serving it "
              "read-only", filename);
  }
  settled = !can_upgrade;

  img = qed_open (filename, &opts);
  if (img == NULL)
    return -1;
  nbdkit_debug ("qed: %s: virtual size %" PRIu64 ", cluster %" PRIu64
                ", tables of %" PRIu32 " clusters, backing %s%s, %s",
                filename, img->dev.size, img->geom.cluster_size,
                img->header.table_size,
                img->backing_path ? img->backing_path : "none",
                img->backing_path && img->backing_raw ? " (raw)" : "",
                can_upgrade ? "read-write on the first writable connection"
                : "read-only");
  return check_due () ? run_check () : 0;
}

/* The first writable connection: reopen read-write, clear unknown
 * autoclear bits and run the check with repair when it is due.
 */
static int
upgrade_to_readwrite (void)
{
  int r = -1;

  pthread_rwlock_wrlock (&upgrade_lock);
  if (upgrade_failed) {
    nbdkit_debug ("%s: the image could not be prepared for writing "
                  "(see the first error); serving reads only", filename);
    goto out;
  }
  if (!img->readonly) {
    r = 0;
    goto out;
  }
  nbdkit_debug ("%s: first writable connection: reopening read-write",
                filename);
  if (qed_upgrade_readwrite (img, true) == -1)
    goto out;
  if (qed_clear_autoclear (img) == -1 ||
      ((check_due () || startup_corrupt) && run_check () == -1)) {
    __atomic_store_n (&upgrade_failed, true, __ATOMIC_RELEASE);
    nbdkit_error ("%s: the image could not be prepared for writing "
                  "(see the error above): serving reads only", filename);
    goto out;
  }
  __atomic_store_n (&settled, true, __ATOMIC_RELEASE);
  r = 0;
 out:
  pthread_rwlock_unlock (&upgrade_lock);
  return r;
}

static void *
qed_plugin_open (int readonly)
{
  /* If the image cannot be prepared for writing (a failed repair),
   * the connection is served read-only (qed_plugin_can_write) rather
   * than refused: reads of a checked image are still good.
   */
  if (!readonly && can_upgrade)
    upgrade_to_readwrite ();
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
  return !img->readonly &&
    !__atomic_load_n (&upgrade_failed, __ATOMIC_ACQUIRE);
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

static void
debug_map (uint64_t count, uint64_t offset)
{
  struct qed_mapping m;

  while (count > 0 && qed_map (img, offset, count, &m) == 0) {
    uint64_t n = MIN (m.length, count);

    if (m.kind == QED_KIND_DATA)
      nbdkit_debug ("qed: map: offset=%" PRIu64 " length=%" PRIu64
                    ": data at file offset %" PRIu64, offset, n,
                    m.host_offset);
    else
      nbdkit_debug ("qed: map: offset=%" PRIu64 " length=%" PRIu64 ": %s",
                    offset, n, m.kind == QED_KIND_ZERO ? "zero cluster"
                    : img->backing ? "backing file" : "unallocated (zeroes)");
    offset += n;
    count -= n;
  }
}

static int
qed_plugin_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                  uint32_t flags)
{
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

  if (qed_debug_map)
    debug_map (count, offset);
  return qed_pread (img, buf, count, offset);
}

static int
qed_plugin_pwrite (void *handle, const void *buf, uint32_t count,
                   uint64_t offset, uint32_t flags)
{
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

  return qed_pwrite (img, buf, count, offset, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_zero (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

  return qed_zero (img, count, offset, flags & NBDKIT_FLAG_MAY_TRIM,
                   flags & NBDKIT_FLAG_FAST_ZERO, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_trim (void *handle, uint32_t count, uint64_t offset,
                 uint32_t flags)
{
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

  return qed_trim (img, count, offset, flags & NBDKIT_FLAG_FUA);
}

static int
qed_plugin_flush (void *handle, uint32_t flags)
{
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

  return qed_flush (img);
}

static int
qed_plugin_extents (void *handle, uint32_t count, uint64_t offset,
                    uint32_t flags, struct nbdkit_extents *extents)
{
  uint64_t end = offset + count;
  IMAGE_STABLE_FOR_CURRENT_SCOPE;

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
