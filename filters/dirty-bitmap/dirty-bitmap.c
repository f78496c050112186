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
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "full-io.h"
#include "ispowerof2.h"
#include "minmax.h"
#include "qad-error.h"
#include "qdb-bits.h"
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

static void
error_handler (const char *msg)
{
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
  return next (nxdata);
}

#define dirtybitmap_config_help \
  "dirty-bitmap=FILE.qdb       (required) The QDB file of dirty bitmaps.\n" \
  "dirty-bitmap-name=NAME      Bitmap(s) to create in a new file.\n" \
  "dirty-bitmap-granularity=N  Granularity of new bitmaps (default 64K)."

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

static int
setup_tracking (void)
{
  size_t i;

  tracked = calloc (qdb->nr_bitmaps ? qdb->nr_bitmaps : 1, sizeof *tracked);
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
  return 0;
}

static int
dirtybitmap_get_ready (int thread_model)
{
  size_t i;

  if (open_and_lock () == -1)
    return -1;
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
    if (nr_names == 0) {
      if (qdb_add_bitmap (qdb, DEFAULT_BITMAP_NAME, granularity, disk_size,
                          QDB_FLAG_ENABLED) == -1)
        return -1;
    }
    for (i = 0; i < nr_names; ++i)
      if (qdb_add_bitmap (qdb, names[i], granularity, disk_size,
                          QDB_FLAG_ENABLED) == -1)
        return -1;
    if (qdb_write (&qdb_io, qdb, true) == -1) {
      /* Leave an empty file, which the next start creates again,
       * rather than a partly written one that it would refuse.
       */
      if (ftruncate (qdb_fd, 0) == -1 || fsync (qdb_fd) == -1)
        nbdkit_error ("%s: cannot empty the partly written file (%m): "
                      "remove it before starting again", qdb_path);
      return -1;
    }
    nbdkit_debug ("%s: created with %zu bitmap(s) for a disk of %" PRIu64
                  " bytes", qdb_path, qdb->nr_bitmaps, disk_size);
    return setup_tracking ();
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
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb->bitmaps[i].flags & QDB_FLAG_ENABLED)
      if (qdb_allocate_all (&qdb_io, qdb, &qdb->bitmaps[i]) == -1)
        return -1;
  return setup_tracking ();
}

static void
dirtybitmap_cleanup (nbdkit_backend *backend)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  nbdkit_debug ("dirty-bitmap: %" PRIu64 " requests needed new bits, "
                "%" PRIu64 " commits (fdatasync), %" PRIu64 " blocks written",
                stat_first_touch, stat_commits, stat_blocks);
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

/* Called with the lock held.  Queue block B of tracked bitmap T. */
static int
enqueue (size_t t, uint64_t b)
{
  if (tracked[t].queued[b])
    return 0;
  if (queue_len == queue_alloc) {
    size_t n = queue_alloc ? queue_alloc * 2 : 64;
    struct queued_block *q = realloc (queue, n * sizeof *q);
    if (!q)
      return -1;
    queue = q;
    queue_alloc = n;
  }
  queue[queue_len++] = (struct queued_block) { t, b };
  tracked[t].queued[b] = 1;
  return 0;
}

/* Called with the lock held: are the granules of [offset, offset+count)
 * durable in every tracked bitmap?
 */
static bool
all_durable (uint64_t offset, uint32_t count)
{
  size_t t;

  for (t = 0; t < nr_tracked; ++t) {
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
  for (i = 0; i < n && r == 0; ++i) {
    struct tracked *t = &tracked[snap[i].t];
    uint64_t off = qdb_bits_file_offset (qdb, t->bm, snap[i].block * BLOCK);
    /* 0: an ALL_ONES cluster, whose bits are all set already. */
    if (off && full_pwrite (qdb_fd, data + i * BLOCK, BLOCK, off) == -1) {
      saved_errno = errno;
      snprintf (why, sizeof why, "writing bitmap \"%s\" at offset %" PRIu64
                ": %s", t->bm->name, off, strerror (saved_errno));
      r = -1;
    }
  }
  if (r == 0 && fdatasync (qdb_fd) == -1) {
    saved_errno = errno;
    snprintf (why, sizeof why, "fdatasync: %s", strerror (saved_errno));
    r = -1;
  }
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
  if (all_durable (offset, count))
    return 0;                   /* the fast path */

  stat_first_touch++;
  for (t = 0; t < nr_tracked; ++t) {
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
 * Connections.
 */

struct handle {
  struct qdb_bitmap *view;      /* NULL: the normal read-write disk */
};

static int
dirtybitmap_list_exports (nbdkit_next_list_exports *next,
                          nbdkit_backend *nxdata, int readonly, int is_tls,
                          struct nbdkit_exports *exports)
{
  size_t i;

  if (next (nxdata, readonly, exports) == -1)
    return -1;
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
  struct qdb_bitmap *view = NULL;

  if (strncmp (exportname, VIEW_PREFIX, strlen (VIEW_PREFIX)) == 0) {
    const char *name = exportname + strlen (VIEW_PREFIX);
    view = qdb_find_bitmap (qdb, name);
    if (!view) {
      nbdkit_error ("%s: no bitmap named \"%s\" (export name \"%s\")",
                    qdb_path, name, exportname);
      return NULL;
    }
    if (next (nxdata, 1, "") == -1)
      return NULL;
  }
  else if (next (nxdata, readonly, exportname) == -1)
    return NULL;

  h = malloc (sizeof *h);
  if (!h) {
    nbdkit_error ("malloc: %m");
    return NULL;
  }
  h->view = view;
  return h;
}

static void
dirtybitmap_close (void *handle)
{
  free (handle);
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

static int
dirtybitmap_pwrite (nbdkit_next *next, void *handle,
                    const void *buf, uint32_t count, uint64_t offset,
                    uint32_t flags, int *err)
{
  if (refuse_if_poisoned (err) == -1 || mark_dirty (offset, count, err) == -1)
    return -1;
  return check_below ("write", flags,
                      next->pwrite (next, buf, count, offset, flags, err),
                      err);
}

static int
dirtybitmap_zero (nbdkit_next *next, void *handle,
                  uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  if (refuse_if_poisoned (err) == -1 || mark_dirty (offset, count, err) == -1)
    return -1;
  return check_below ("write-zeroes", flags,
                      next->zero (next, count, offset, flags, err), err);
}

static int
dirtybitmap_trim (nbdkit_next *next, void *handle,
                  uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  if (refuse_if_poisoned (err) == -1 || mark_dirty (offset, count, err) == -1)
    return -1;
  return check_below ("trim", flags,
                      next->trim (next, count, offset, flags, err), err);
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
  return 0;
}

static int
dirtybitmap_extents (nbdkit_next *next, void *handle,
                     uint32_t count, uint64_t offset, uint32_t flags,
                     struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;
  const struct qdb_bitmap *bm = h->view;
  uint64_t end, off;

  if (!bm)
    return next->extents (next, count, offset, flags, extents, err);

  end = MIN (offset + count, bm->disk_size);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
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
  .pwrite            = dirtybitmap_pwrite,
  .zero              = dirtybitmap_zero,
  .trim              = dirtybitmap_trim,
  .flush             = dirtybitmap_flush,
  .extents           = dirtybitmap_extents,
};

NBDKIT_REGISTER_FILTER (filter)
