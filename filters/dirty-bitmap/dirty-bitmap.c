/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit-dirty-bitmap-filter: changed-block tracking into a QDB file
 * (docs/specs/qdb.txt), for incremental backup.  This file is the glue:
 * parameters, lifecycle, can_* and the data path.  The persistence
 * engine (strict and lazy tracking, group commit, checkpoints, poison,
 * draining for commands) is common/qdb/qdb-tracker.c; the file's
 * lock-and-replace protocol is common/qdb/qdb-replace.c; the export
 * "dirty-bitmap:NAME" is view.c; the control socket and freezes are
 * control.c.
 *
 * Notes on the design.
 *
 * Lifecycle.  .config resolves the QDB path (nbdkit chdirs to /).
 * .get_ready opens the file, creating it (empty) when missing, takes
 * the whole-file lock on it (a second server is refused), removes the
 * scratch file names a crash during a freeze may have left
 * (common/qdb/qdb-scratch.h), and validates an existing file fully
 * (common/qdb).  .after_fork opens a shared
 * context on the plugin to learn the disk size: a new (empty) file gets
 * its header, directory and bitmaps written then; an existing one must
 * describe a disk of exactly that size, and only then is it changed:
 * every enabled bitmap gets a data cluster for every table entry
 * (qdb_allocate_all), so that the hot path never allocates.  A clean
 * shutdown in lazy mode rewrites the file without a region map.  A
 * refusal there comes after nbdkit has forked: common/utils/late-refusal
 * makes it one line on the original stderr in every mode and lets no
 * client wait on the listening socket.
 *
 * Data path.  Every write, write-zeroes and trim is marked in the
 * tracker and copied into the freezes before it is passed down,
 * between qdb_tracker_begin_change (one lock acquisition: counted in
 * flight, then marked) and qdb_tracker_end_io (lock-free unless a
 * command waits), so that a command sees it whole or not at all.  A
 * failed flush below, or a failed FUA request below (except with
 * errors that say nothing about durability), poisons the tracker: the plugin's fdatasync may have
 * failed, and Linux reports that to one fdatasync only, so a later
 * successful flush would acknowledge data the kernel may have dropped.
 *
 * Lock order: the QDB file's whole-file lock (from .get_ready to exit),
 * then tracker.lock (which also protects tracker.qdb and the list of
 * freezes), then the new file's lock inside persist.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "dirty-bitmap.h"
#include "ispowerof2.h"
#include "late-refusal.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qdb-replace.h"
#include "qdb-scratch.h"
#include "string-vector.h"

#define DEFAULT_BITMAP_NAME "bitmap0"

/* Parameters (set in .config, read-only afterwards). */
char *qdb_path;
char *scratch_dir;              /* dirty-bitmap-scratch-dir= */
static string_vector names;     /* dirty-bitmap-name=, in order */
static uint64_t granularity = QDB_DEFAULT_GRANULARITY;
static char *control_path;      /* dirty-bitmap-control= */
static bool lazy;               /* dirty-bitmap-tracking=lazy */
static uint64_t region_size = UINT64_C (16) << 20;
static unsigned checkpoint_interval = 5;

/* Set up in .get_ready / .after_fork, read-only afterwards (except
 * qdb_fd and qdb_io, which persist changes under the tracker's lock).
 */
static int qdb_fd = -1;
static struct qdb_io qdb_io;
static struct qdb_file *qdb;    /* the model, until the tracker has it */
static bool new_file;           /* file was empty at .get_ready */
uint64_t disk_size;
struct qdb_tracker tracker;
static bool serving;            /* .after_fork succeeded */

/* -D dirty-bitmap.commit=1: log each group commit.  nbdkit looks up
 * "dirty-bitmap_debug_commit", not a C identifier: that name is an
 * assembler alias of debug_commit (an asm label on the variable itself
 * breaks ASan, whose instrumentation derives symbol names from it).
 */
int debug_commit;
__asm__ (".globl \"dirty-bitmap_debug_commit\"\n"
         ".set \"dirty-bitmap_debug_commit\", debug_commit\n");

static void
log_commit (uint64_t nr, size_t blocks)
{
  nbdkit_debug ("dirty-bitmap: commit %" PRIu64 ": %zu block(s) of bits",
                nr, blocks);
}

static void
dirtybitmap_load (void)
{
  qad_set_error_handler (control_error_handler);
}

static void
dirtybitmap_unload (void)
{
  qdb_tracker_free (&tracker);
  qdb_free (qdb);
  control_free ();
  free (control_path);
  free (scratch_dir);
  if (qdb_fd >= 0)
    close (qdb_fd);
  string_vector_free_all (&names);
  free (qdb_path);
}

static int
dirtybitmap_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                    const char *key, const char *value)
{
  if (strcmp (key, "dirty-bitmap") == 0) {
    free (qdb_path);
    qdb_path = nbdkit_absolute_path (value);
    return qdb_path ? 0 : -1;
  }
  else if (strcmp (key, "dirty-bitmap-control") == 0) {
    free (control_path);
    control_path = nbdkit_absolute_path (value);
    return control_path ? 0 : -1;
  }
  else if (strcmp (key, "dirty-bitmap-scratch-dir") == 0) {
    free (scratch_dir);
    scratch_dir = nbdkit_realpath (value);
    return scratch_dir ? 0 : -1;
  }
  else if (strcmp (key, "dirty-bitmap-tracking") == 0) {
    if (strcmp (value, "lazy") == 0)
      lazy = true;
    else if (strcmp (value, "strict") == 0)
      lazy = false;
    else {
      nbdkit_error ("dirty-bitmap-tracking=%s: must be strict or lazy",
                    value);
      return -1;
    }
    return 0;
  }
  else if (strcmp (key, "dirty-bitmap-region-size") == 0) {
    int64_t r = nbdkit_parse_size (value);
    if (r == -1)
      return -1;
    if (!is_power_of_2 (r) || (uint64_t) r < QDB_MIN_REGION_SIZE ||
        (uint64_t) r > QDB_MAX_REGION_SIZE) {
      nbdkit_error ("dirty-bitmap-region-size=%s: must be a power of 2 "
                    "between 1M and 1T", value);
      return -1;
    }
    region_size = r;
    return 0;
  }
  else if (strcmp (key, "dirty-bitmap-checkpoint-interval") == 0) {
    if (nbdkit_parse_unsigned ("dirty-bitmap-checkpoint-interval", value,
                               &checkpoint_interval) == -1)
      return -1;
    if (checkpoint_interval < 1 || checkpoint_interval > 3600) {
      nbdkit_error ("dirty-bitmap-checkpoint-interval=%s: must be 1 to "
                    "3600 seconds", value);
      return -1;
    }
    return 0;
  }
  else if (strcmp (key, "dirty-bitmap-name") == 0) {
    char *v;

    if (!qdb_name_ok ("dirty-bitmap-name", value))
      return -1;
    v = strdup (value);
    if (!v) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    if (string_vector_append (&names, v) == -1) {
      nbdkit_error ("realloc: %m");
      free (v);
      return -1;
    }
    return 0;
  }
  else if (strcmp (key, "dirty-bitmap-granularity") == 0) {
    int64_t r = nbdkit_parse_size (value);
    if (r == -1)
      return -1;
    if (!is_power_of_2 (r) || r < QDB_MIN_GRANULARITY ||
        (uint64_t) r > QDB_MAX_GRANULARITY) {
      nbdkit_error ("dirty-bitmap-granularity=%s: must be a power of 2 "
                    "between %d and %" PRIu64, value, QDB_MIN_GRANULARITY,
                    QDB_MAX_GRANULARITY);
      return -1;
    }
    granularity = r;
    return 0;
  }
  else if (strcmp (key, "dirty-bitmap-max-size") == 0)
    return qad_set_limit (key, value, nbdkit_parse_size (value),
                          &qad_limits.max_qdb_bytes);
  else
    return next (nxdata, key, value);
}

static int
dirtybitmap_config_complete (nbdkit_next_config_complete *next,
                             nbdkit_backend *nxdata)
{
  if (!qdb_path) {
    nbdkit_error ("the dirty-bitmap=FILE.qdb parameter is required");
    return -1;
  }
  if (!scratch_dir) {
    const char *slash = strrchr (qdb_path, '/');
    scratch_dir = strndup (qdb_path, slash > qdb_path ? slash - qdb_path : 1);
    if (!scratch_dir) {
      nbdkit_error ("strndup: %m");
      return -1;
    }
  }
  return next (nxdata);
}

#define dirtybitmap_config_help \
  "dirty-bitmap=FILE.qdb       (required) The QDB file of dirty bitmaps.\n" \
  "dirty-bitmap-name=NAME      Bitmap(s) to create in a new file.\n" \
  "dirty-bitmap-granularity=N  Granularity of new bitmaps (default 64K).\n" \
  "dirty-bitmap-control=SOCKET Unix socket for live bitmap commands.\n" \
  "dirty-bitmap-tracking=strict|lazy  Sync the fine bits (strict, default)\n" \
  "                            or a coarse region map (lazy) before writes.\n" \
  "dirty-bitmap-region-size=N  Lazy tracking's region size (default 16M).\n" \
  "dirty-bitmap-checkpoint-interval=S  Lazy: write fine bits every S s (5).\n" \
  "dirty-bitmap-scratch-dir=DIR  Copy-before-write scratch files of frozen\n" \
  "                            bitmaps (default: the QDB file's directory).\n" \
  "dirty-bitmap-max-size=SIZE  Memory a QDB file may need (default 1G)."

static int
dirtybitmap_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

static int
dirtybitmap_get_ready (int thread_model)
{
  size_t i;
  int stale;

  late_refusal_prepare ();
  qdb_fd = qdb_open_locked (qdb_path, O_RDWR | O_CREAT);
  if (qdb_fd == -1)
    return -1;
  /* Holding the lock, no freeze of this file can be live: any scratch
   * file name of it that a crash left is stale (qdb-scratch.h).
   */
  stale = qdb_scratch_remove_stale (scratch_dir, qdb_path);
  if (stale == -1)
    return -1;
  if (stale > 0)
    nbdkit_debug ("%s: removed %d stale scratch file(s) of an earlier "
                  "freeze from %s", qdb_path, stale, scratch_dir);
  if (control_new (control_path) == -1)
    return -1;
  if (qdb_io_init_fd (&qdb_io, &qdb_fd, qdb_path) == -1)
    return -1;
  if (qdb_tracker_init (&tracker, qdb_path, &qdb_io, lazy,
                        checkpoint_interval) == -1)
    return -1;

  if (qdb_io.size == 0) {
    /* New file: written in .after_fork, once the disk size is known. */
    new_file = true;
    return 0;
  }

  qdb = qdb_read (&qdb_io, true);
  if (!qdb)
    return -1;
  for (i = 0; i < names.len; ++i) {
    struct qdb_bitmap *bm = qdb_find_bitmap (qdb, names.ptr[i]);
    if (!bm) {
      nbdkit_error ("%s: no bitmap named \"%s\" (add it with: qad-img "
                    "bitmap %s --add %s)", qdb_path, names.ptr[i], qdb_path,
                    names.ptr[i]);
      return -1;
    }
    if (!(bm->flags & QDB_FLAG_ENABLED))
      nbdkit_debug ("%s: bitmap \"%s\" is disabled: it will not track "
                    "changes", qdb_path, names.ptr[i]);
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    if ((bm->flags & QDB_FLAG_ENABLED) && (bm->flags & QDB_FLAG_IN_USE)) {
      nbdkit_error ("%s: bitmap \"%s\" has the IN_USE flag: it may have "
                    "missed changes; clear it with: qad-img bitmap %s "
                    "--clear %s", qdb_path, bm->name, qdb_path, bm->name);
      return -1;
    }
  }
  /* Nothing is written until .after_fork has checked the disk size. */
  return 0;
}

/* At the end of a successful .after_fork: QDB (written in the file as
 * the tracker needs it) goes to the tracker, and the threads start.
 */
static int
start_tracking (void)
{
  struct qdb_file *model = qdb;

  size_t i, enabled = 0;

  for (i = 0; i < model->nr_bitmaps; ++i)
    enabled += (model->bitmaps[i].flags & QDB_FLAG_ENABLED) != 0;
  nbdkit_debug ("dirty-bitmap: %s: %zu bitmap(s), %zu enabled, disk of %"
                PRIu64 " bytes, tracking %s", qdb_path, model->nr_bitmaps,
                enabled, disk_size, lazy ? "lazy" : "strict");
  qdb = NULL;
  if (debug_commit)
    tracker.on_commit = log_commit;
  if (qdb_tracker_set_model (&tracker, model, disk_size) == -1)
    return -1;
  if (lazy && qdb_tracker_start_checkpoints (&tracker) == -1)
    return -1;
  return control_start ();
}

static int
start_serving (nbdkit_backend *backend)
{
  nbdkit_next *next;
  int64_t size;
  size_t i;

  next = nbdkit_next_context_open (backend, 1, "", 1);
  if (next == NULL)
    return -1;
  if (next->prepare (next) == -1) {
    nbdkit_next_context_close (next);
    return -1;
  }
  size = next->get_size (next);
  next->finalize (next);
  nbdkit_next_context_close (next);
  if (size == -1)
    return -1;
  disk_size = size;

  if (new_file) {
    qdb = qdb_new (qdb_path, QDB_DEFAULT_CLUSTER_BITS);
    if (!qdb)
      return -1;
    qdb->region_size = lazy ? region_size : 0;
    if (names.len == 0) {
      if (qdb_add_bitmap (qdb, DEFAULT_BITMAP_NAME, granularity, disk_size,
                          QDB_FLAG_ENABLED) == -1)
        return -1;
    }
    for (i = 0; i < names.len; ++i)
      if (qdb_add_bitmap (qdb, names.ptr[i], granularity, disk_size,
                          QDB_FLAG_ENABLED) == -1)
        return -1;
    /* Written under a new name and renamed over the empty file (with
     * the directory synced), so that a crash leaves either the empty
     * file, which the next start fills again, or the whole new one:
     * never a partly written file that it would refuse (found by
     * test-powercut-dirty-bitmap).
     */
    if (persist (qdb) == -1)
      return -1;
    nbdkit_debug ("%s: created with %zu bitmap(s) for a disk of %" PRIu64
                  " bytes", qdb_path, qdb->nr_bitmaps, disk_size);
    return start_tracking ();
  }

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].disk_size != disk_size) {
      qad_error ("%s: bitmap \"%s\": disk_size %" PRIu64 " does not "
                 "match the size of the disk being served (%" PRIu64
                 " bytes)", qdb_path, qdb->bitmaps[i].name,
                 qdb->bitmaps[i].disk_size, disk_size);
      return -1;
    }

  /* The file is valid and describes this disk: open it for writing as
   * the spec says (clear unknown autoclear bits first), then give every
   * enabled bitmap all its data clusters.
   */
  if (qdb_clear_unknown_autoclear (&qdb_io, qdb) == -1)
    return -1;
  if (lazy || qdb->region_size) {
    /* After an unclean shutdown qdb_read has ORed the region map into
     * the bitmaps: write them out with a fresh (or no) region map.
     */
    if (qdb->region_recovered)
      nbdkit_debug ("%s: region map of an unclean shutdown: %" PRIu64
                    " granules marked dirty", qdb_path,
                    qdb->region_recovered);
    qdb->region_size = lazy ? region_size : 0;
    if (persist (qdb) == -1)
      return -1;
    return start_tracking ();
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].flags & QDB_FLAG_ENABLED)
      if (qdb_allocate_all (&qdb_io, qdb, &qdb->bitmaps[i]) == -1)
        return -1;
  return start_tracking ();
}

/* A refusal here comes after nbdkit has forked: besides nbdkit's log
 * (which is the system log in the background), the first message goes
 * to the original stderr, and no client is left waiting on a socket
 * that nobody will serve (late-refusal.h).
 */
static int
dirtybitmap_after_fork (nbdkit_backend *backend)
{
  CLEANUP_FREE char *why = NULL;
  int r;

  error_capture_begin ();
  r = start_serving (backend);
  why = error_capture_end ();
  if (r == -1) {
    CLEANUP_FREE char *line = NULL;

    if (asprintf (&line, "nbdkit: error: %s", why ? why
                  : "dirty-bitmap: could not start serving (the reason is "
                  "in the system log)") == -1)
      line = NULL;
    late_refusal_report (line ? line : "nbdkit: error: dirty-bitmap: "
                         "could not start serving");
    /* nbdkit exits without .cleanup or .unload: remove the control
     * socket now.
     */
    control_abandon ();
  }
  else
    serving = true;
  return r;
}

static void
dirtybitmap_cleanup (nbdkit_backend *backend)
{
  if (!tracker.io)
    return;                     /* .get_ready did not get that far */
  control_stop ();
  qdb_tracker_stop (&tracker);
  qdb_tracker_begin_command (&tracker, true);
  if (lazy && serving && tracker.qdb && !qdb_tracker_poisoned (&tracker)) {
    /* Clean shutdown: every bit into the file, no region map. */
    tracker.qdb->region_size = 0;
    if (persist (tracker.qdb) == -1)
      nbdkit_error ("%s: could not write the bitmaps at shutdown: the "
                    "region map stays and will be applied at the next "
                    "open", qdb_path);
  }
  qdb_tracker_end_command (&tracker);
  nbdkit_debug ("dirty-bitmap: %" PRIu64 " requests needed new bits, "
                "%" PRIu64 " commits (fdatasync), %" PRIu64 " blocks written, "
                "%" PRIu64 " checkpoints (fdatasync)",
                tracker.stat_first_touch, tracker.stat_commits,
                tracker.stat_blocks, tracker.stat_checkpoints);
}

int
persist (struct qdb_file *model)
{
  struct stat st;
  int fd, r;

  if (fstat (qdb_fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", qdb_path);
    return -1;
  }
  r = qdb_replace_file (qdb_path, model, st.st_mode & 07777, true, &fd);
  if (fd >= 0) {                /* qdb_path names the new file */
    close (qdb_fd);
    qdb_fd = fd;
    if (qdb_io_init_fd (&qdb_io, &qdb_fd, qdb_path) == -1)
      r = -1;
  }
  return r;
}

/*----------------------------------------------------------------------
 * Connections.
 */

struct handle {
  char *view;                   /* bitmap name; NULL: the read-write disk */
};

static int
dirtybitmap_list_exports (nbdkit_next_list_exports *next,
                          nbdkit_backend *nxdata, int readonly, int is_tls,
                          struct nbdkit_exports *exports)
{
  if (next (nxdata, readonly, exports) == -1)
    return -1;
  return view_list_exports (exports);
}

static const char *
dirtybitmap_default_export (nbdkit_next_default_export *next,
                            nbdkit_backend *nxdata, int readonly, int is_tls)
{
  /* The default export is the normal read-write disk. */
  return next (nxdata, readonly);
}

static void *
dirtybitmap_open (nbdkit_next_open *next, nbdkit_context *nxdata,
                  int readonly, const char *exportname, int is_tls)
{
  struct handle *h;
  char *view = NULL;

  if (strncmp (exportname, VIEW_PREFIX, strlen (VIEW_PREFIX)) == 0) {
    const char *name = exportname + strlen (VIEW_PREFIX);

    if (view_check_name (name, exportname) == -1)
      return NULL;
    if (next (nxdata, 1, "") == -1)
      return NULL;
    view = strdup (name);
    if (!view) {
      nbdkit_error ("strdup: %m");
      return NULL;
    }
  }
  else if (next (nxdata, readonly, exportname) == -1)
    return NULL;

  h = malloc (sizeof *h);
  if (!h) {
    nbdkit_error ("malloc: %m");
    free (view);
    return NULL;
  }
  h->view = view;
  return h;
}

static void
dirtybitmap_close (void *handle)
{
  struct handle *h = handle;

  free (h->view);
  free (h);
}

static int
dirtybitmap_prepare (nbdkit_next *next, void *handle, int readonly)
{
  int64_t size = next->get_size (next);

  if (size == -1)
    return -1;
  if ((uint64_t) size != disk_size) {
    nbdkit_error ("%s: the disk is %" PRId64 " bytes but the bitmaps "
                  "describe %" PRIu64 " bytes", qdb_path, size, disk_size);
    return -1;
  }
  return 0;
}

static int
dirtybitmap_can_write (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? 0 : next->can_write (next);
}

static int
dirtybitmap_can_flush (nbdkit_next *next, void *handle)
{
  return next->can_flush (next);
}

static int
dirtybitmap_can_trim (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? 0 : next->can_trim (next);
}

static int
dirtybitmap_can_zero (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? NBDKIT_ZERO_NONE : next->can_zero (next);
}

static int
dirtybitmap_can_fast_zero (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? 0 : next->can_fast_zero (next);
}

static int
dirtybitmap_can_fua (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? NBDKIT_FUA_NONE : next->can_fua (next);
}

static int
dirtybitmap_can_multi_conn (nbdkit_next *next, void *handle)
{
  /* The bitmap is shared by all connections, so it adds no
   * inconsistency of its own.
   */
  return next->can_multi_conn (next);
}

static int
dirtybitmap_can_extents (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return h->view ? 1 : next->can_extents (next);
}

enum change { CHANGE_WRITE, CHANGE_ZERO, CHANGE_TRIM };

/* Every request that changes the disk: its granules are marked (and
 * frozen bitmaps' copies made) before it is passed down.
 */
static int
change_disk (nbdkit_next *next, enum change what, const void *buf,
             uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  static const char *const change_names[] = {
    "write", "write-zeroes", "trim"
  };
  int r;

  if (qdb_tracker_refuse_if_poisoned (&tracker, err) == -1)
    return -1;
  r = qdb_tracker_begin_change (&tracker, offset, count, err);
  if (r == 0)
    r = freezes_before_write (next, offset, count, err);
  if (r == 0) {
    switch (what) {
    case CHANGE_WRITE:
      r = next->pwrite (next, buf, count, offset, flags, err);
      break;
    case CHANGE_ZERO:
      r = next->zero (next, count, offset, flags, err);
      break;
    case CHANGE_TRIM:
      r = next->trim (next, count, offset, flags, err);
      break;
    }
    r = qdb_tracker_after_below (&tracker, change_names[what],
                                 flags & NBDKIT_FLAG_FUA, r, err);
  }
  qdb_tracker_end_io (&tracker);
  return r;
}

static int
dirtybitmap_pwrite (nbdkit_next *next, void *handle,
                    const void *buf, uint32_t count, uint64_t offset,
                    uint32_t flags, int *err)
{
  return change_disk (next, CHANGE_WRITE, buf, count, offset, flags, err);
}

static int
dirtybitmap_zero (nbdkit_next *next, void *handle,
                  uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  return change_disk (next, CHANGE_ZERO, NULL, count, offset, flags, err);
}

static int
dirtybitmap_trim (nbdkit_next *next, void *handle,
                  uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  return change_disk (next, CHANGE_TRIM, NULL, count, offset, flags, err);
}

static int
dirtybitmap_pread (nbdkit_next *next, void *handle,
                   void *buf, uint32_t count, uint64_t offset,
                   uint32_t flags, int *err)
{
  struct handle *h = handle;

  if (!h->view)
    return next->pread (next, buf, count, offset, flags, err);
  return view_pread (next, h->view, buf, count, offset, flags, err);
}

static int
flush_next (void *opaque, int *err)
{
  nbdkit_next *next = opaque;

  return next->flush (next, 0, err);
}

static int
dirtybitmap_flush (nbdkit_next *next, void *handle, uint32_t flags,
                   int *err)
{
  return qdb_tracker_flush (&tracker, flush_next, next, err);
}

static int
dirtybitmap_extents (nbdkit_next *next, void *handle,
                     uint32_t count, uint64_t offset, uint32_t flags,
                     struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;

  if (!h->view)
    return next->extents (next, count, offset, flags, extents, err);
  return view_extents (next, h->view, count, offset, flags, extents, err);
}

static struct nbdkit_filter filter = {
  .name              = "dirty-bitmap",
  .longname          = "nbdkit dirty-bitmap filter (QDB changed-block "
                       "tracking)",
  .load              = dirtybitmap_load,
  .unload            = dirtybitmap_unload,
  .config            = dirtybitmap_config,
  .config_complete   = dirtybitmap_config_complete,
  .config_help       = dirtybitmap_config_help,
  .thread_model      = dirtybitmap_thread_model,
  .get_ready         = dirtybitmap_get_ready,
  .after_fork        = dirtybitmap_after_fork,
  .cleanup           = dirtybitmap_cleanup,
  .list_exports      = dirtybitmap_list_exports,
  .default_export    = dirtybitmap_default_export,
  .open              = dirtybitmap_open,
  .close             = dirtybitmap_close,
  .prepare           = dirtybitmap_prepare,
  .can_write         = dirtybitmap_can_write,
  .can_flush         = dirtybitmap_can_flush,
  .can_trim          = dirtybitmap_can_trim,
  .can_zero          = dirtybitmap_can_zero,
  .can_fast_zero     = dirtybitmap_can_fast_zero,
  .can_fua           = dirtybitmap_can_fua,
  .can_multi_conn    = dirtybitmap_can_multi_conn,
  .can_extents       = dirtybitmap_can_extents,
  .pread             = dirtybitmap_pread,
  .pwrite            = dirtybitmap_pwrite,
  .zero              = dirtybitmap_zero,
  .trim              = dirtybitmap_trim,
  .flush             = dirtybitmap_flush,
  .extents           = dirtybitmap_extents,
};

NBDKIT_REGISTER_FILTER (filter)
