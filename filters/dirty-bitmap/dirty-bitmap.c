/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit-dirty-bitmap-filter: changed-block tracking into a QDB file
 * (docs/specs/qdb.txt), for incremental backup.
 *
 * Notes on the design.
 *
 * Lifecycle.  .config resolves the QDB path (nbdkit chdirs to /).
 * .get_ready opens the file, creating it (empty) when missing, takes
 * an OFD write lock on it (a second server is refused), and validates
 * an existing file fully (common/qdb).  .after_fork opens a shared
 * context on the plugin to learn the disk size: a new (empty) file gets
 * its header, directory and bitmaps written then; an existing one must
 * describe a disk of exactly that size, and only then is it changed:
 * every enabled bitmap gets a data cluster for every table entry
 * (qdb_allocate_all), so that the hot path never allocates.
 *
 * Tracking (the persist-before-write protocol of the spec).  Every
 * write, write-zeroes and trim calls mark_dirty before it is passed
 * down.  Each enabled bitmap has two bit arrays in memory: "mem"
 * (bm->bits: bits set, maybe not durable yet) and "durable" (bits known
 * to be on disk after an fdatasync).  When every granule of a request
 * is already durable in every enabled bitmap, mark_dirty costs a bit
 * test under the lock.  Otherwise it sets the bits in mem, queues the
 * 512-byte blocks of bitmap data that changed, and waits until its
 * granules are durable.  Group commit: the first waiter that finds no
 * commit in flight becomes the leader: it takes a snapshot of every
 * queued block (so the queue is empty again for others), drops the
 * lock, pwrites the blocks and does ONE fdatasync, then marks the
 * snapshot durable and wakes everybody.  Requests that arrived while
 * a commit was in flight are handled by the next leader, all with one
 * sync.  Bits only go from 0 to 1 here, so a torn block write is still
 * a superset of the previous durable state (see the spec).
 *
 * Lazy tracking (dirty-bitmap-tracking=lazy, the region map of the
 * spec).  What must be durable before a request is passed down is then
 * the coarse region map instead of the fine bits: the region map is one
 * more entry of "tracked" (region_bm, stored contiguously at
 * raw_offset) and all_durable looks at it alone.  Fine bits are set in
 * memory and their blocks go to lazy_queue, written by checkpoint() (a
 * thread, every dirty-bitmap-checkpoint-interval seconds and soon after
 * each NBD flush) with one fdatasync.  region_epoch records the regions written since the last
 * checkpoint's snapshot; after the fine blocks are durable, regions
 * not in region_epoch are cleared in the map (their durable bits first,
 * so a later write there commits the region again, after the clearing
 * write, through the same group commit).  A clean shutdown rewrites
 * the file without a region map; after a crash the reader ORs the
 * marked regions into the enabled bitmaps (common/qdb).
 *
 * I/O errors ("poison").  The filter refuses every further write,
 * write-zeroes, trim and flush with EIO until restart, logging one
 * line when it starts, after:
 * - a failed pwrite or fdatasync of the bitmap: we can no longer
 *   promise the bitmap covers what changed;
 * - a failed flush of the plugin below, whatever the error, or a
 *   failed FUA request below (except with the errors in
 *   fua_error_is_harmless: a refusal, or ENOSPC from allocating):
 *   the plugin's fdatasync may have failed, and Linux reports that to
 *   one fdatasync only (nbdkit's file plugin fails once, then
 *   succeeds), so a later successful flush would acknowledge data the
 *   kernel may have dropped.
 *
 * Views.  The export name "dirty-bitmap:NAME" opens a read-only view
 * of the same disk whose base:allocation extents are the bitmap: data
 * (0) for dirty granules, HOLE (without ZERO) for clean ones.
 *
 * Live control (dirty-bitmap-control=SOCKET).  A thread serves the
 * protocol of common/qdb/qdb-control.h.  A command is atomic with
 * respect to writes by draining: it sets command_pending (new requests
 * wait in begin_io), waits until no request is in flight (between
 * begin_io and end_io: bitmap marking, copy-before-write and the
 * plugin's write) and no commit runs, then applies every operation to
 * a copy of the model, writes the copy to a new file (fsync, rename,
 * fsync of the directory) and swaps it in.  So every write lands in the
 * enabled bitmaps of before or of after the command, and no write is
 * half-way through during it.  All of this happens under the lock.
 *
 * Freeze (a command too) keeps a qdb_freeze (common/qdb/qdb-freeze.c)
 * per frozen bitmap; every write, zero and trim copies the granules it
 * is about to change into the freeze's scratch file first, and the view
 * dirty-bitmap:NAME reads through it.  The list of freezes changes only
 * during a command, when nothing is in flight, so requests read it
 * without the lock.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "fsync-dir.h"
#include "image-lock.h"
#include "full-io.h"
#include "ispowerof2.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qdb-bits.h"
#include "qdb-control.h"
#include "qdb-freeze.h"
#include "qdb-ops.h"
#include "qdb.h"
#include "rounding.h"

#define VIEW_PREFIX "dirty-bitmap:"
#define DEFAULT_BITMAP_NAME "bitmap0"
#define BLOCK 512               /* unit of bitmap data persisted */

/* Parameters (set in .config, read-only afterwards). */
static char *qdb_path;
static char **names;            /* dirty-bitmap-name=, in order */
static size_t nr_names;
static uint64_t granularity = QDB_DEFAULT_GRANULARITY;
static char *control_path;      /* dirty-bitmap-control= */
static bool lazy;               /* dirty-bitmap-tracking=lazy */
static uint64_t region_size = UINT64_C (16) << 20;
static unsigned checkpoint_interval = 5;
static char *scratch_dir;       /* dirty-bitmap-scratch-dir= */

/* Set up in .get_ready / .after_fork, read-only afterwards (except
 * through the lock below).
 */
static int qdb_fd = -1;
static struct qdb_io qdb_io;
static struct qdb_file *qdb;
static bool new_file;           /* file was empty at .get_ready */
static uint64_t disk_size;

struct tracked {
  struct qdb_bitmap *bm;        /* bm->bits is "mem" */
  uint64_t raw_offset;          /* region map: where its bits are stored */
  uint8_t *durable;             /* bits known durable */
  uint8_t *queued;              /* one byte per BLOCK of bits */
};

/* One per enabled bitmap. */
static struct tracked *tracked;
static size_t nr_tracked;

struct queued_block {
  size_t t;                     /* index into tracked */
  uint64_t block;
};

/* lock protects: every bitmap's mem and durable bits and queued flags,
 * the queue, commit_in_progress and the statistics.  Bit
 * arrays are read-modify-written a byte at a time, so every access to
 * them, reads included, holds it.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Signalled (under lock) when a commit ends. */
static pthread_cond_t commit_done = PTHREAD_COND_INITIALIZER;
static struct queued_block *queue;
static size_t queue_len, queue_alloc;
static bool commit_in_progress;
/* Poisoned (see the notes above).  Set once with __atomic_exchange_n,
 * read with __atomic_load_n: the write path tests it without the lock.
 */
static int failed;
static uint64_t stat_first_touch, stat_commits, stat_blocks;
/* Also under lock (see the notes on live control); commit_done is
 * broadcast too when in_flight drops to 0 and when a command ends.
 */
static uint64_t in_flight;
static bool command_pending;
static struct qdb_freeze **frozen;
static size_t nr_frozen;
/* Lazy tracking, under lock too: the region map (last entry of
 * tracked), regions written since the last checkpoint snapshot, fine
 * bitmap blocks not yet written, and the checkpoint thread's state.
 */
static struct qdb_bitmap region_bm;
static uint8_t *region_epoch;
static struct queued_block *lazy_queue;
static size_t lazy_len, lazy_alloc;
static pthread_cond_t ckpt_cond = PTHREAD_COND_INITIALIZER;
static pthread_t ckpt_thread;
static bool ckpt_started, ckpt_stop, ckpt_requested;
static uint64_t stat_checkpoints;

/* The control thread. */
static struct qdb_ctl_server *ctl_server;
static pthread_t ctl_thread;
static bool ctl_thread_started;

/* While the control thread runs a command, the first error message
 * reported through qad_error is kept here for the reply.
 */
static __thread char *captured_error;
static __thread bool capturing;

static void
error_handler (const char *msg)
{
  if (capturing && !captured_error)
    captured_error = strdup (msg);
  nbdkit_error ("%s", msg);
}

static void
dirtybitmap_load (void)
{
  qad_set_error_handler (error_handler);
}

static void
dirtybitmap_unload (void)
{
  size_t i;

  for (i = 0; i < nr_tracked; ++i) {
    free (tracked[i].durable);
    free (tracked[i].queued);
  }
  free (tracked);
  free (queue);
  free (lazy_queue);
  free (region_bm.bits);
  free (region_epoch);
  for (i = 0; i < nr_frozen; ++i)
    qdb_freeze_free (frozen[i]);
  free (frozen);
  qdb_ctl_server_free (ctl_server);
  free (control_path);
  free (scratch_dir);
  qdb_free (qdb);
  if (qdb_fd >= 0)
    close (qdb_fd);
  for (i = 0; i < nr_names; ++i)
    free (names[i]);
  free (names);
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
    char **p;

    if (!qdb_name_ok ("dirty-bitmap-name", value))
      return -1;
    p = realloc (names, (nr_names + 1) * sizeof *p);
    if (!p) {
      nbdkit_error ("realloc: %m");
      return -1;
    }
    names = p;
    names[nr_names] = strdup (value);
    if (!names[nr_names]) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    nr_names++;
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

/* Open and lock the file, making sure that the path still names the
 * inode we locked (qad-img replaces files by rename while holding the
 * lock on the old one).
 */
static int
open_and_lock (void)
{
  int tries;

  for (tries = 0; tries < 10; ++tries) {
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    struct stat a, b;
    int fd;

    fd = open (qdb_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
      nbdkit_error ("%s: open: %m", qdb_path);
      return -1;
    }
    if (fcntl (fd, F_OFD_SETLK, &fl) == -1) {
      if (errno == EAGAIN || errno == EACCES)
        nbdkit_error ("%s: the QDB file is locked by another process "
                      "(another nbdkit serving it, or qad-img changing "
                      "it): refusing to use it", qdb_path);
      else
        nbdkit_error ("%s: fcntl F_OFD_SETLK: %m", qdb_path);
      close (fd);
      return -1;
    }
    if (fstat (fd, &a) == -1 || stat (qdb_path, &b) == -1) {
      nbdkit_error ("%s: stat: %m", qdb_path);
      close (fd);
      return -1;
    }
    if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
      qdb_fd = fd;
      return 0;
    }
    close (fd);                 /* replaced under us: try again */
  }
  nbdkit_error ("%s: the file keeps being replaced", qdb_path);
  return -1;
}

/* Lazy tracking: the region map, all clear (as qdb_write leaves it),
 * as the last tracked entry.
 */
static int
setup_region_tracking (void)
{
  struct tracked *t = &tracked[nr_tracked];
  size_t len = ROUND_UP (qdb->region_map_size, BLOCK);

  free (region_bm.bits);
  free (region_epoch);
  region_bm = (struct qdb_bitmap) {
    .name = (char *) "region map", .granularity = qdb->region_size,
    .disk_size = disk_size, .bits_len = len,
    .nr_granules = div_round_up (disk_size, qdb->region_size),
  };
  region_bm.bits = calloc (len, 1);
  region_epoch = calloc (len, 1);
  t->bm = &region_bm;
  t->raw_offset = qdb->region_map_offset;
  t->durable = calloc (len, 1);
  t->queued = calloc (len / BLOCK + 1, 1);
  if (!region_bm.bits || !region_epoch || !t->durable || !t->queued) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  nr_tracked++;
  return 0;
}

static int
setup_tracking (void)
{
  size_t i;

  tracked = calloc (qdb->nr_bitmaps + 1, sizeof *tracked);
  if (!tracked) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    struct tracked *t;

    if (!(bm->flags & QDB_FLAG_ENABLED))
      continue;
    t = &tracked[nr_tracked];
    t->bm = bm;
    t->durable = malloc (bm->bits_len ? bm->bits_len : 1);
    t->queued = calloc (div_round_up (bm->bits_len, BLOCK) + 1, 1);
    if (!t->durable || !t->queued) {
      nbdkit_error ("malloc: %m");
      return -1;
    }
    memcpy (t->durable, bm->bits, bm->bits_len);
    nr_tracked++;
  }
  return lazy ? setup_region_tracking () : 0;
}

static int
dirtybitmap_get_ready (int thread_model)
{
  size_t i;

  if (open_and_lock () == -1)
    return -1;
  if (control_path) {
    ctl_server = qdb_ctl_server_new (control_path);
    if (!ctl_server)
      return -1;
  }
  if (qdb_io_init_fd (&qdb_io, &qdb_fd, qdb_path) == -1)
    return -1;

  if (qdb_io.size == 0) {
    /* New file: written in .after_fork, once the disk size is known. */
    new_file = true;
    return 0;
  }

  qdb = qdb_read (&qdb_io, true);
  if (!qdb)
    return -1;
  for (i = 0; i < nr_names; ++i) {
    struct qdb_bitmap *bm = qdb_find_bitmap (qdb, names[i]);
    if (!bm) {
      nbdkit_error ("%s: no bitmap named \"%s\" (add it with: qad-img "
                    "bitmap %s --add %s)", qdb_path, names[i], qdb_path,
                    names[i]);
      return -1;
    }
    if (!(bm->flags & QDB_FLAG_ENABLED))
      nbdkit_debug ("%s: bitmap \"%s\" is disabled: it will not track "
                    "changes", qdb_path, names[i]);
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

static char *handle_control (void *opaque, char *body, size_t len,
                             size_t *reply_len);
static void *checkpoint_thread (void *arg);

static void *
control_thread (void *arg)
{
  qdb_ctl_server_run (ctl_server, handle_control, NULL);
  return NULL;
}

/* After a successful .after_fork: start serving the control socket
 * (created in .get_ready, so that a refusal is seen before the fork).
 */
static int
start_control (void)
{
  int err;

  if (lazy) {
    err = pthread_create (&ckpt_thread, NULL, checkpoint_thread, NULL);
    if (err) {
      errno = err;
      nbdkit_error ("pthread_create: %m");
      return -1;
    }
    ckpt_started = true;
  }
  if (!ctl_server)
    return 0;
  err = pthread_create (&ctl_thread, NULL, control_thread, NULL);
  if (err) {
    errno = err;
    nbdkit_error ("%s: pthread_create: %m", control_path);
    return -1;
  }
  ctl_thread_started = true;
  return 0;
}

static int persist (struct qdb_file *model);
static bool poisoned (void);

static int
dirtybitmap_after_fork (nbdkit_backend *backend)
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
    if (nr_names == 0) {
      if (qdb_add_bitmap (qdb, DEFAULT_BITMAP_NAME, granularity, disk_size,
                          QDB_FLAG_ENABLED) == -1)
        return -1;
    }
    for (i = 0; i < nr_names; ++i)
      if (qdb_add_bitmap (qdb, names[i], granularity, disk_size,
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
    return setup_tracking () == -1 ? -1 : start_control ();
  }

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].disk_size != disk_size) {
      nbdkit_error ("%s: bitmap \"%s\": disk_size %" PRIu64 " does not "
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
    return setup_tracking () == -1 ? -1 : start_control ();
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].flags & QDB_FLAG_ENABLED)
      if (qdb_allocate_all (&qdb_io, qdb, &qdb->bitmaps[i]) == -1)
        return -1;
  return setup_tracking () == -1 ? -1 : start_control ();
}

static void
dirtybitmap_cleanup (nbdkit_backend *backend)
{
  if (ctl_thread_started) {
    qdb_ctl_server_stop (ctl_server);
    pthread_join (ctl_thread, NULL);
    ctl_thread_started = false;
  }
  if (ckpt_started) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
      ckpt_stop = true;
      pthread_cond_broadcast (&ckpt_cond);
    }
    pthread_join (ckpt_thread, NULL);
    ckpt_started = false;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  while (commit_in_progress)
    pthread_cond_wait (&commit_done, &lock);
  if (lazy && qdb && !poisoned ()) {
    /* Clean shutdown: every bit into the file, no region map. */
    qdb->region_size = 0;
    if (persist (qdb) == -1)
      nbdkit_error ("%s: could not write the bitmaps at shutdown: the "
                    "region map stays and will be applied at the next "
                    "open", qdb_path);
  }
  nbdkit_debug ("dirty-bitmap: %" PRIu64 " requests needed new bits, "
                "%" PRIu64 " commits (fdatasync), %" PRIu64 " blocks written, "
                "%" PRIu64 " checkpoints (fdatasync)",
                stat_first_touch, stat_commits, stat_blocks,
                stat_checkpoints);
}

/*----------------------------------------------------------------------
 * Poison.
 */

/* Refuse all further writes and flushes; log WHY once. */
static void
poison (const char *why)
{
  if (__atomic_exchange_n (&failed, 1, __ATOMIC_ACQ_REL) == 0)
    nbdkit_error ("%s: %s: refusing every further write and flush with "
                  "EIO until nbdkit is restarted", qdb_path, why);
}

static bool
poisoned (void)
{
  return __atomic_load_n (&failed, __ATOMIC_ACQUIRE) != 0;
}

/* Errors of a FUA request below that say nothing about durability:
 * the request was refused before any I/O, or failed to allocate
 * (ENOSPC from the write; a plugin's flush failing with ENOSPC is
 * possible on some storage but cannot be told apart: see LIMITATIONS
 * in the man page).
 */
static bool
fua_error_is_harmless (int err)
{
  switch (err) {
  case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
  case EOPNOTSUPP:
#endif
  case EINVAL: case EPERM: case EROFS: case ENOSPC: case EDQUOT:
    return true;
  default:
    return false;
  }
}

/* After a request below with FLAGS returned R (error in *ERR). */
static int
check_below (const char *what, uint32_t flags, int r, int *err)
{
  if (r == -1 && (flags & NBDKIT_FLAG_FUA) &&
      !fua_error_is_harmless (*err)) {
    char why[128];
    snprintf (why, sizeof why, "a FUA %s failed in the plugin below: %s",
              what, strerror (*err));
    poison (why);
  }
  return r;
}

/* At the start of every write-side request. */
static int
refuse_if_poisoned (int *err)
{
  if (poisoned ()) {
    *err = EIO;
    return -1;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Tracking.
 */

/* Called with the lock held.  Queue block B of tracked bitmap T on
 * the queue *Q (the commit queue or the lazy one).
 */
static int
enqueue_on (struct queued_block **q, size_t *len, size_t *alloc,
            size_t t, uint64_t b)
{
  if (tracked[t].queued[b])
    return 0;
  if (*len == *alloc) {
    size_t n = *alloc ? *alloc * 2 : 64;
    struct queued_block *nq = realloc (*q, n * sizeof *nq);
    if (!nq)
      return -1;
    *q = nq;
    *alloc = n;
  }
  (*q)[(*len)++] = (struct queued_block) { t, b };
  tracked[t].queued[b] = 1;
  return 0;
}

static int
enqueue (size_t t, uint64_t b)
{
  return enqueue_on (&queue, &queue_len, &queue_alloc, t, b);
}

/* Without the lock: write the N blocks SNAP (contents DATA) to their
 * places in the file, then fdatasync.  On failure, -1 with errno set
 * and the reason in WHY (for poison).
 */
static int
write_blocks (const struct queued_block *snap, const uint8_t *data, size_t n,
              char *why, size_t whylen)
{
  size_t i;

  for (i = 0; i < n; ++i) {
    const struct tracked *t = &tracked[snap[i].t];
    uint64_t off = t->raw_offset ? t->raw_offset + snap[i].block * BLOCK
      : qdb_bits_file_offset (qdb, t->bm, snap[i].block * BLOCK);
    /* 0: an ALL_ONES cluster, whose bits are all set already. */
    if (off && full_pwrite (qdb_fd, data + i * BLOCK, BLOCK, off) == -1) {
      int e = errno;
      snprintf (why, whylen, "writing bitmap \"%s\" at offset %" PRIu64
                ": %s", t->bm->name, off, strerror (e));
      errno = e;
      return -1;
    }
  }
  if (fdatasync (qdb_fd) == -1) {
    int e = errno;
    snprintf (why, whylen, "fdatasync: %s", strerror (e));
    errno = e;
    return -1;
  }
  return 0;
}

static int commit (void);

/* Called with the lock held, lazy tracking: set the fine bits of
 * [offset, offset+count) in memory, queue their blocks for the next
 * checkpoint, and note the regions in region_epoch.
 */
static int
lazy_mark (uint64_t offset, uint32_t count)
{
  size_t t;
  uint64_t b;

  for (t = 0; t + 1 < nr_tracked; ++t) {
    struct qdb_bitmap *bm = tracked[t].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = MIN ((offset + count - 1) / bm->granularity,
                         bm->nr_granules - 1);

    if (first > last || qdb_bits_all_set (bm->bits, first, last))
      continue;
    qdb_bits_set_range (bm->bits, first, last);
    for (b = (first / 8) / BLOCK; b <= (last / 8) / BLOCK; ++b)
      if (enqueue_on (&lazy_queue, &lazy_len, &lazy_alloc, t, b) == -1)
        return -1;
  }
  qdb_bits_set_range (region_epoch, offset / region_bm.granularity,
                      MIN ((offset + count - 1) / region_bm.granularity,
                           region_bm.nr_granules - 1));
  return 0;
}

/* Lazy tracking: write the fine blocks queued so far with one
 * fdatasync, then clear the regions nobody wrote to since (see the
 * notes).  Takes the lock.
 */
static void
checkpoint (void)
{
  CLEANUP_FREE struct queued_block *snap = NULL;
  CLEANUP_FREE uint8_t *data = NULL;
  struct tracked *rt;
  char why[256];
  size_t n, i, j;
  int r = 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  while (commit_in_progress || command_pending)
    pthread_cond_wait (&commit_done, &lock);
  if (poisoned () || nr_tracked == 0)
    return;
  n = lazy_len;
  snap = malloc ((n ? n : 1) * sizeof *snap);
  data = malloc ((n ? n : 1) * BLOCK);
  if (!snap || !data) {
    nbdkit_error ("malloc: %m");
    return;
  }
  for (i = 0; i < n; ++i) {
    struct tracked *t = &tracked[lazy_queue[i].t];
    snap[i] = lazy_queue[i];
    memcpy (data + i * BLOCK, t->bm->bits + snap[i].block * BLOCK, BLOCK);
    t->queued[snap[i].block] = 0;
  }
  lazy_len = 0;
  memset (region_epoch, 0, region_bm.bits_len);

  if (n > 0) {
    commit_in_progress = true;
    pthread_mutex_unlock (&lock);
    r = write_blocks (snap, data, n, why, sizeof why);
    pthread_mutex_lock (&lock);
    commit_in_progress = false;
    pthread_cond_broadcast (&commit_done);
    stat_checkpoints++;
    if (r == -1) {
      poison (why);
      return;
    }
    for (i = 0; i < n; ++i) {
      uint8_t *d = tracked[snap[i].t].durable + snap[i].block * BLOCK;
      for (j = 0; j < BLOCK; ++j)
        d[j] |= data[i * BLOCK + j];
    }
  }

  /* Every fine bit set before the snapshot is durable now: keep only
   * the regions written since.
   */
  rt = &tracked[nr_tracked - 1];
  for (i = 0; i < region_bm.bits_len; ++i) {
    if (region_bm.bits[i] == region_epoch[i])
      continue;
    rt->durable[i] &= region_epoch[i];
    region_bm.bits[i] = region_epoch[i];
    if (enqueue (nr_tracked - 1, i / BLOCK) == -1) {
      nbdkit_error ("realloc: %m");
      return;                   /* the map only stays a superset */
    }
  }
  if (queue_len > 0 && commit () == -1)
    return;
}

static void *
checkpoint_thread (void *arg)
{
  for (;;) {
    struct timespec ts;

    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += checkpoint_interval;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
      while (!ckpt_stop && !ckpt_requested &&
             pthread_cond_timedwait (&ckpt_cond, &lock, &ts) != ETIMEDOUT)
        ;
      if (ckpt_stop)
        return NULL;
      ckpt_requested = false;
    }
    checkpoint ();
  }
}

/* Lazy tracking: ask the checkpoint thread for a checkpoint now (after
 * an NBD flush), without waiting for it.
 */
static void
request_checkpoint (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  if (!ckpt_requested && lazy_len > 0) {
    ckpt_requested = true;
    pthread_cond_signal (&ckpt_cond);
  }
}

/* Called with the lock held: are the granules of [offset, offset+count)
 * durable in every tracked bitmap?
 */
static bool
all_durable (uint64_t offset, uint32_t count)
{
  size_t t;

  for (t = lazy ? nr_tracked - 1 : 0; t < nr_tracked; ++t) {
    const struct qdb_bitmap *bm = tracked[t].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = (offset + count - 1) / bm->granularity;
    if (!qdb_bits_all_set (tracked[t].durable, first, last))
      return false;
  }
  return true;
}

/* Called with the lock held, as the commit leader.  Drops the lock
 * during I/O.
 */
static int
commit (void)
{
  const size_t n = queue_len;
  CLEANUP_FREE struct queued_block *snap = NULL;
  CLEANUP_FREE uint8_t *data = NULL;
  size_t i;
  int r = 0, saved_errno = 0;
  char why[256];

  snap = malloc ((n ? n : 1) * sizeof *snap);
  data = malloc ((n ? n : 1) * BLOCK);
  if (!snap || !data) {
    nbdkit_error ("malloc: %m");
    return -1;
  }
  for (i = 0; i < n; ++i) {
    struct tracked *t = &tracked[queue[i].t];
    snap[i] = queue[i];
    memcpy (data + i * BLOCK, t->bm->bits + queue[i].block * BLOCK, BLOCK);
    t->queued[queue[i].block] = 0;
  }
  queue_len = 0;
  commit_in_progress = true;
  stat_commits++;
  stat_blocks += n;

  pthread_mutex_unlock (&lock);
  r = write_blocks (snap, data, n, why, sizeof why);
  if (r == -1)
    saved_errno = errno;
  pthread_mutex_lock (&lock);

  if (r == 0) {
    for (i = 0; i < n; ++i) {
      struct tracked *t = &tracked[snap[i].t];
      uint8_t *d = t->durable + snap[i].block * BLOCK;
      const uint8_t *s = data + i * BLOCK;
      size_t j;
      for (j = 0; j < BLOCK; ++j)
        d[j] |= s[j];
    }
  }
  else
    poison (why);
  commit_in_progress = false;
  pthread_cond_broadcast (&commit_done);
  errno = saved_errno;
  return r;
}

/* Before passing down a request that changes [offset, offset+count). */
static int
mark_dirty (uint64_t offset, uint32_t count, int *err)
{
  size_t t;

  if (count == 0 || nr_tracked == 0)
    return 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  if (refuse_if_poisoned (err) == -1)
    return -1;
  if (lazy && lazy_mark (offset, count) == -1) {
    nbdkit_error ("realloc: %m");
    *err = ENOMEM;
    return -1;
  }
  if (all_durable (offset, count))
    return 0;                   /* the fast path */

  stat_first_touch++;
  for (t = lazy ? nr_tracked - 1 : 0; t < nr_tracked; ++t) {
    struct qdb_bitmap *bm = tracked[t].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = (offset + count - 1) / bm->granularity;
    uint64_t b;

    if (last >= bm->nr_granules) {
      nbdkit_error ("%s: request at offset %" PRIu64 " length %" PRIu32
                    " is past the end of bitmap \"%s\" (%" PRIu64 " bytes)",
                    qdb_path, offset, count, bm->name, bm->disk_size);
      *err = EIO;
      return -1;
    }
    if (qdb_bits_all_set (bm->bits, first, last))
      continue;                 /* set, commit pending or in flight */
    qdb_bits_set_range (bm->bits, first, last);
    for (b = (first / 8) / BLOCK; b <= (last / 8) / BLOCK; ++b)
      if (enqueue (t, b) == -1) {
        nbdkit_error ("realloc: %m");
        *err = ENOMEM;
        return -1;
      }
  }

  while (!all_durable (offset, count)) {
    if (refuse_if_poisoned (err) == -1)
      return -1;
    if (commit_in_progress)
      pthread_cond_wait (&commit_done, &lock);
    else if (queue_len == 0) {
      /* Cannot happen: bits set in mem are queued, in flight or
       * durable.  Refuse rather than loop.
       */
      nbdkit_error ("%s: internal error: bits not durable and not queued",
                    qdb_path);
      *err = EIO;
      return -1;
    }
    else if (commit () == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Requests in flight, copy-before-write.
 */

static void
begin_io (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  while (command_pending)
    pthread_cond_wait (&commit_done, &lock);
  in_flight++;
}

static void
end_io (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  if (--in_flight == 0 && command_pending)
    pthread_cond_broadcast (&commit_done);
}

/* The freeze of bitmap NAME, or NULL.  Between begin_io and end_io. */
static struct qdb_freeze *
find_freeze (const char *name)
{
  size_t i;

  for (i = 0; i < nr_frozen; ++i)
    if (strcmp (qdb_freeze_name (frozen[i]), name) == 0)
      return frozen[i];
  return NULL;
}

static int
read_next (void *opaque, void *buf, uint32_t count, uint64_t offset,
           int *err)
{
  nbdkit_next *next = opaque;

  return next->pread (next, buf, count, offset, 0, err);
}

/* Between begin_io and end_io, before a request that changes
 * [offset, offset+count) is passed down.
 */
static int
before_write (nbdkit_next *next, uint64_t offset, uint32_t count, int *err)
{
  size_t i;

  if (mark_dirty (offset, count, err) == -1)
    return -1;
  for (i = 0; i < nr_frozen; ++i)
    if (qdb_freeze_before_write (frozen[i], offset, count, read_next, next,
                                 err) == -1)
      return -1;
  return 0;
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
  size_t i;

  if (next (nxdata, readonly, exports) == -1)
    return -1;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  for (i = 0; qdb && i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    CLEANUP_FREE char *name = NULL, *desc = NULL;

    if (asprintf (&name, VIEW_PREFIX "%s", bm->name) == -1 ||
        asprintf (&desc, "dirty bitmap %s (%s, granularity %" PRIu64 "): "
                  "read-only view, extents show dirty granules as data",
                  bm->name, bm->flags & QDB_FLAG_ENABLED ? "enabled"
                  : "disabled", bm->granularity) == -1) {
      nbdkit_error ("asprintf: %m");
      return -1;
    }
    if (nbdkit_add_export (exports, name, desc) == -1)
      return -1;
  }
  return 0;
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
    bool found;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
      found = qdb_find_bitmap (qdb, name) != NULL;
    }
    if (!found) {
      nbdkit_error ("%s: no bitmap named \"%s\" (export name \"%s\")",
                    qdb_path, name, exportname);
      return NULL;
    }
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

  if (refuse_if_poisoned (err) == -1)
    return -1;
  begin_io ();
  r = before_write (next, offset, count, err);
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
    r = check_below (change_names[what], flags, r, err);
  }
  end_io ();
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
  struct qdb_freeze *fz;
  int r;

  if (!h->view)
    return next->pread (next, buf, count, offset, flags, err);
  begin_io ();
  fz = find_freeze (h->view);
  if (fz)
    r = qdb_freeze_read (fz, buf, count, offset, read_next, next, err);
  else
    r = next->pread (next, buf, count, offset, flags, err);
  end_io ();
  return r;
}

static int
dirtybitmap_flush (nbdkit_next *next, void *handle, uint32_t flags,
                   int *err)
{
  if (refuse_if_poisoned (err) == -1)
    return -1;
  if (next->flush (next, flags, err) == -1) {
    char why[128];
    snprintf (why, sizeof why, "a flush failed in the plugin below: %s",
              strerror (*err));
    poison (why);
    return -1;
  }
  if (lazy)
    request_checkpoint ();
  return 0;
}

static int
dirtybitmap_extents (nbdkit_next *next, void *handle,
                     uint32_t count, uint64_t offset, uint32_t flags,
                     struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;
  const struct qdb_bitmap *bm;
  uint64_t end, off;

  if (!h->view)
    return next->extents (next, count, offset, flags, extents, err);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  bm = qdb_find_bitmap (qdb, h->view);
  if (!bm) {
    nbdkit_error ("%s: bitmap \"%s\" was removed while its view is open",
                  qdb_path, h->view);
    *err = ENOENT;
    return -1;
  }
  end = MIN (offset + count, bm->disk_size);
  for (off = offset; off < end; ) {
    uint64_t n = off / bm->granularity;
    uint64_t run = qdb_bits_run (bm->bits, n, bm->nr_granules);
    uint64_t run_end = MIN ((n + run) * bm->granularity, bm->disk_size);
    uint32_t type = bit_test (bm->bits, n) ? 0 : NBDKIT_EXTENT_HOLE;

    if (nbdkit_add_extent (extents, off, run_end - off, type) == -1) {
      *err = errno;
      return -1;
    }
    off = run_end;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Live control commands (the control thread).
 */

/* Write MODEL to a new file beside the QDB file and rename it over it;
 * the new file (locked) replaces qdb_fd.  Called with the lock held.
 */
static int
persist (struct qdb_file *model)
{
  CLEANUP_FREE char *tmp = NULL;
  struct qdb_io io;
  struct stat st;
  int fd;

  if (asprintf (&tmp, "%s.tmpXXXXXX", qdb_path) == -1) {
    nbdkit_error ("asprintf: %m");
    return -1;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("%s: %m", tmp);
    return -1;
  }
  if (qad_lock_whole_file (fd, tmp, "the new QDB file") == -1 ||
      fstat (qdb_fd, &st) == -1 ||
      fchmod (fd, st.st_mode & 07777) == -1 ||
      qdb_io_init_fd (&io, &fd, qdb_path) == -1 ||
      qdb_write (&io, model, true) == -1 || fsync (fd) == -1 ||
      rename (tmp, qdb_path) == -1) {
    nbdkit_error ("%s: writing the new QDB file %s: %m", qdb_path, tmp);
    close (fd);
    unlink (tmp);
    return -1;
  }
  /* The new name must be durable before anything relies on it. */
  if (qad_fsync_dir_of (qdb_path) == -1) {
    nbdkit_error ("%s: fsync of its directory: %m", qdb_path);
    close (qdb_fd);
    qdb_fd = fd;
    qdb_io_init_fd (&qdb_io, &qdb_fd, qdb_path);
    return -1;
  }
  close (qdb_fd);
  qdb_fd = fd;
  return qdb_io_init_fd (&qdb_io, &qdb_fd, qdb_path);
}

static void
free_tracking (void)
{
  size_t i;

  for (i = 0; i < nr_tracked; ++i) {
    free (tracked[i].durable);
    free (tracked[i].queued);
  }
  free (tracked);
  tracked = NULL;
  nr_tracked = 0;
  queue_len = 0;
  lazy_len = 0;
}

static bool
in_names (const char **names_, size_t n, const char *name)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (strcmp (names_[i], name) == 0)
      return true;
  return false;
}

/* Apply OPS atomically.  Called with the lock held, nothing in flight
 * and no commit running.  Sets *INFO when a reply needs the bitmaps.
 */
static int
run_command (const struct qdb_op *ops, size_t n, bool *info)
{
  const char *fnames[QDB_CTL_MAX_OPS + 64];
  struct qdb_freeze **nfz = NULL;
  struct qdb_file *copy;
  size_t nr_fnames = 0, nr_nfz = 0, i, j;
  bool changes = false;

  *info = false;
  for (i = 0; i < n; ++i) {
    if (ops[i].kind == QDB_OP_INFO)
      *info = true;
    else
      changes = true;
  }
  if (!changes)
    return 0;
  if (poisoned ()) {
    qad_error ("%s: the dirty bitmaps are no longer kept up to date (an "
               "earlier write failed): refusing commands", qdb_path);
    return -1;
  }
  if (nr_frozen > 64) {
    qad_error ("%s: too many frozen bitmaps", qdb_path);
    return -1;
  }
  for (i = 0; i < nr_frozen; ++i)
    fnames[nr_fnames++] = qdb_freeze_name (frozen[i]);

  copy = qdb_clone (qdb);
  if (!copy)
    return -1;
  for (i = 0; i < n; ++i) {
    const struct qdb_op *op = &ops[i];
    struct qdb_bitmap *bm;

    switch (op->kind) {
    case QDB_OP_INFO:
      continue;
    case QDB_OP_FREEZE:
      bm = qdb_find_bitmap (copy, op->name);
      if (!bm) {
        qad_error ("%s: no bitmap named \"%s\"", qdb_path, op->name);
        goto err;
      }
      if (in_names (fnames, nr_fnames, op->name)) {
        qad_error ("%s: bitmap \"%s\" is already frozen", qdb_path,
                   op->name);
        goto err;
      }
      fnames[nr_fnames++] = op->name;
      bm->flags &= ~QDB_FLAG_ENABLED;
      continue;
    case QDB_OP_RELEASE:
      for (j = 0; j < nr_fnames; ++j)
        if (strcmp (fnames[j], op->name) == 0)
          break;
      if (j == nr_fnames) {
        qad_error ("%s: bitmap \"%s\" is not frozen", qdb_path, op->name);
        goto err;
      }
      fnames[j] = fnames[--nr_fnames];
      continue;
    case QDB_OP_REMOVE: case QDB_OP_CLEAR: case QDB_OP_ENABLE:
      if (in_names (fnames, nr_fnames, op->name)) {
        qad_error ("%s: bitmap \"%s\" is frozen: release it first "
                   "(%s)", qdb_path, op->name, qdb_op_word (op->kind));
        goto err;
      }
      break;
    case QDB_OP_MERGE:
      if (in_names (fnames, nr_fnames, op->into)) {
        qad_error ("%s: bitmap \"%s\" is frozen: release it first "
                   "(merge into it)", qdb_path, op->into);
        goto err;
      }
      break;
    default:
      break;
    }
    if (qdb_op_apply (copy, op, disk_size) == -1)
      goto err;
  }

  /* New freezes first (they may fail), then the file, then the swap. */
  nfz = calloc (nr_fnames ? nr_fnames : 1, sizeof *nfz);
  if (!nfz) {
    qad_error ("calloc: %m");
    goto err;
  }
  for (i = 0; i < nr_fnames; ++i) {
    struct qdb_freeze *fz = NULL;
    for (j = 0; j < nr_frozen; ++j)
      if (strcmp (qdb_freeze_name (frozen[j]), fnames[i]) == 0)
        fz = frozen[j];
    if (!fz) {
      struct qdb_bitmap *bm = qdb_find_bitmap (copy, fnames[i]);
      fz = qdb_freeze_new (scratch_dir, fnames[i], bm->granularity,
                           disk_size);
      if (!fz)
        goto err;
    }
    nfz[nr_nfz++] = fz;
  }
  if (persist (copy) == -1)
    goto err;

  for (j = 0; j < nr_frozen; ++j) {
    for (i = 0; i < nr_nfz; ++i)
      if (nfz[i] == frozen[j])
        break;
    if (i == nr_nfz)
      qdb_freeze_free (frozen[j]);      /* released */
  }
  free (frozen);
  frozen = nfz;
  nr_frozen = nr_nfz;
  free_tracking ();
  qdb_free (qdb);
  qdb = copy;
  if (setup_tracking () == -1) {
    poison ("could not set the bitmaps up again after a command");
    return -1;
  }
  return 0;

 err:
  if (nfz)
    for (i = 0; i < nr_nfz; ++i) {
      for (j = 0; j < nr_frozen; ++j)
        if (nfz[i] == frozen[j])
          break;
      if (j == nr_frozen)
        qdb_freeze_free (nfz[i]);
    }
  free (nfz);
  qdb_free (copy);
  return -1;
}

/* The "ok" reply, with the bitmaps when INFO.  Called with the lock. */
static char *
ok_reply (bool info, size_t *len)
{
  char *buf = NULL;
  size_t i, j;
  FILE *fp = open_memstream (&buf, len);

  if (!fp)
    return NULL;
  fputs ("ok\n", fp);
  for (i = 0; info && qdb && i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    const char *state = bm->flags & QDB_FLAG_ENABLED ? "enabled" : "disabled";
    for (j = 0; j < nr_frozen; ++j)
      if (strcmp (qdb_freeze_name (frozen[j]), bm->name) == 0)
        state = "frozen";
    fprintf (fp, "bitmap %s %" PRIu64 " %s %" PRIu64 " %" PRIu64 "\n",
             bm->name, bm->granularity, state, qdb_dirty_bytes (bm),
             bm->disk_size);
  }
  if (fclose (fp) == EOF) {
    free (buf);
    return NULL;
  }
  return buf;
}

static char *
handle_control (void *opaque, char *body, size_t len, size_t *reply_len)
{
  struct qdb_op ops[QDB_CTL_MAX_OPS];
  char err[256];
  char *reply = NULL;
  size_t n;
  bool info = false;
  int r;

  if (qdb_ctl_decode_request (body, len, ops, &n, err, sizeof err) == -1)
    goto error;

  capturing = true;
  free (captured_error);
  captured_error = NULL;
  {
    size_t i;
    bool only_info = true;

    for (i = 0; i < n; ++i)
      only_info &= ops[i].kind == QDB_OP_INFO;
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
    if (!only_info) {           /* info alone need not pause writes */
      command_pending = true;
      while (in_flight > 0 || commit_in_progress)
        pthread_cond_wait (&commit_done, &lock);
    }
    r = run_command (ops, n, &info);
    command_pending = false;
    pthread_cond_broadcast (&commit_done);
    if (r == 0)
      reply = ok_reply (info, reply_len);
  }
  capturing = false;
  if (r == 0)
    return reply;
  snprintf (err, sizeof err, "%s", captured_error ? captured_error
            : "the command failed (see the server's log)");
  free (captured_error);
  captured_error = NULL;

 error:
  *reply_len = asprintf (&reply, "error %s\n", err);
  return *reply_len == (size_t) -1 ? NULL : reply;
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
