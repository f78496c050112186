/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Changed-block tracking into an open QDB file.  The design notes and
 * the lock order are in qdb-tracker.h: in short, the QDB file's
 * whole-file lock, then the tracker's lock, then (during a command
 * only) the new file's lock and a freeze's locks.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "qad-error.h"
#include "qdb-tracker.h"
#include "rounding.h"

#define BLOCK QDB_TRACKER_BLOCK

int
qdb_tracker_init (struct qdb_tracker *t, const char *name, struct qdb_io *io,
                  bool lazy, unsigned checkpoint_interval)
{
  memset (t, 0, sizeof *t);
  t->name = name;
  t->io = io;
  t->lazy = lazy;
  t->checkpoint_interval = checkpoint_interval;
  pthread_mutex_init (&t->lock, NULL);
  pthread_cond_init (&t->changed, NULL);
  pthread_cond_init (&t->ckpt_cond, NULL);
  return 0;
}

static void
free_tracking (struct qdb_tracker *t)
{
  size_t i;

  for (i = 0; i < t->nr_tracked; ++i) {
    free (t->tracked[i].durable);
    free (t->tracked[i].queued);
  }
  free (t->tracked);
  t->tracked = NULL;
  t->nr_tracked = 0;
  t->queue.len = 0;
  t->lazy_queue.len = 0;
}

void
qdb_tracker_free (struct qdb_tracker *t)
{
  if (!t->io)
    return;                     /* never initialised */
  qdb_tracker_stop (t);
  free_tracking (t);
  qdb_block_queue_reset (&t->queue);
  qdb_block_queue_reset (&t->lazy_queue);
  free (t->region_bm.bits);
  free (t->region_epoch);
  qdb_free (t->qdb);
  t->qdb = NULL;
  pthread_cond_destroy (&t->ckpt_cond);
  pthread_cond_destroy (&t->changed);
  pthread_mutex_destroy (&t->lock);
}

/* Lazy tracking: the region map, all clear (as qdb_write leaves it),
 * as the last tracked entry.
 */
static int
setup_region_tracking (struct qdb_tracker *t)
{
  struct qdb_tracked *r = &t->tracked[t->nr_tracked];
  const struct qdb_file *qdb = t->qdb;
  size_t len = ROUND_UP (qdb->region_map_size, BLOCK);

  free (t->region_bm.bits);
  free (t->region_epoch);
  t->region_bm = (struct qdb_bitmap) {
    .name = (char *) "region map", .granularity = qdb->region_size,
    .disk_size = t->disk_size, .bits_len = len,
    .nr_granules = div_round_up (t->disk_size, qdb->region_size),
  };
  t->region_bm.bits = calloc (len, 1);
  t->region_epoch = calloc (len, 1);
  r->bm = &t->region_bm;
  r->raw_offset = qdb->region_map_offset;
  r->durable = calloc (len, 1);
  r->queued = calloc (len / BLOCK + 1, 1);
  if (!t->region_bm.bits || !t->region_epoch || !r->durable || !r->queued) {
    qad_error ("calloc: %m");
    return -1;
  }
  t->nr_tracked++;
  return 0;
}

int
qdb_tracker_set_model (struct qdb_tracker *t, struct qdb_file *qdb,
                       uint64_t disk_size)
{
  size_t i;

  free_tracking (t);
  if (t->qdb != qdb)
    qdb_free (t->qdb);
  t->qdb = qdb;
  t->disk_size = disk_size;
  t->tracked = calloc (qdb->nr_bitmaps + 1, sizeof *t->tracked);
  if (!t->tracked) {
    qad_error ("calloc: %m");
    return -1;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    struct qdb_tracked *tr;

    if (!(bm->flags & QDB_FLAG_ENABLED))
      continue;
    tr = &t->tracked[t->nr_tracked];
    tr->bm = bm;
    tr->durable = malloc (bm->bits_len ? bm->bits_len : 1);
    tr->queued = calloc (div_round_up (bm->bits_len, BLOCK) + 1, 1);
    if (!tr->durable || !tr->queued) {
      qad_error ("malloc: %m");
      return -1;
    }
    memcpy (tr->durable, bm->bits, bm->bits_len);
    t->nr_tracked++;
  }
  return t->lazy ? setup_region_tracking (t) : 0;
}

/*----------------------------------------------------------------------
 * Poison.
 */

void
qdb_tracker_poison (struct qdb_tracker *t, const char *why)
{
  if (__atomic_exchange_n (&t->failed, 1, __ATOMIC_ACQ_REL) == 0)
    qad_error ("%s: %s: refusing every further write and flush with "
               "EIO until restart", t->name, why);
}

int
qdb_tracker_refuse_if_poisoned (struct qdb_tracker *t, int *err)
{
  if (qdb_tracker_poisoned (t)) {
    *err = EIO;
    return -1;
  }
  return 0;
}

/* Errors of a FUA request below that say nothing about durability:
 * the request was refused before any I/O, or failed to allocate
 * (ENOSPC from the write; a flush failing with ENOSPC is possible on
 * some storage but cannot be told apart: see LIMITATIONS in the
 * filter's man page).
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

int
qdb_tracker_after_below (struct qdb_tracker *t, const char *what, bool fua,
                         int r, const int *err)
{
  if (r == -1 && fua && !fua_error_is_harmless (*err)) {
    char why[128];
    snprintf (why, sizeof why, "a FUA %s failed in the plugin below: %s",
              what, strerror (*err));
    qdb_tracker_poison (t, why);
  }
  return r;
}

int
qdb_tracker_flush (struct qdb_tracker *t, qdb_flush_below flush,
                   void *opaque, int *err)
{
  if (qdb_tracker_refuse_if_poisoned (t, err) == -1)
    return -1;
  if (flush (opaque, err) == -1) {
    char why[128];
    snprintf (why, sizeof why, "a flush failed in the plugin below: %s",
              strerror (*err));
    qdb_tracker_poison (t, why);
    return -1;
  }
  if (t->lazy)
    qdb_tracker_request_checkpoint (t);
  return 0;
}

/*----------------------------------------------------------------------
 * Queues and block writes.
 */

/* Called with the lock held.  Queue block B of tracked bitmap I on Q
 * (the commit queue or the lazy one), unless it is on one already.
 */
static int
enqueue (struct qdb_tracker *t, qdb_block_queue *q, size_t i, uint64_t b)
{
  if (t->tracked[i].queued[b])
    return 0;
  if (qdb_block_queue_append (q, (struct qdb_queued_block) { i, b }) == -1)
    return -1;
  t->tracked[i].queued[b] = 1;
  return 0;
}

/* Called with the lock held: move Q into a snapshot (*SNAP, contents
 * *DATA, *N blocks), so that Q is empty for others.
 */
static int
take_snapshot (struct qdb_tracker *t, qdb_block_queue *q,
               struct qdb_queued_block **snap, uint8_t **data, size_t *n)
{
  size_t i;

  *n = q->len;
  *snap = malloc ((*n ? *n : 1) * sizeof **snap);
  *data = malloc ((*n ? *n : 1) * BLOCK);
  if (!*snap || !*data) {
    qad_error ("malloc: %m");
    return -1;
  }
  for (i = 0; i < *n; ++i) {
    const struct qdb_queued_block *qb = &q->ptr[i];
    struct qdb_tracked *tr = &t->tracked[qb->t];

    (*snap)[i] = *qb;
    memcpy (*data + i * BLOCK, tr->bm->bits + qb->block * BLOCK, BLOCK);
    tr->queued[qb->block] = 0;
  }
  q->len = 0;
  return 0;
}

/* Called with the lock held, after a successful write of a snapshot. */
static void
snapshot_durable (struct qdb_tracker *t, const struct qdb_queued_block *snap,
                  const uint8_t *data, size_t n)
{
  size_t i, j;

  for (i = 0; i < n; ++i) {
    uint8_t *d = t->tracked[snap[i].t].durable + snap[i].block * BLOCK;
    for (j = 0; j < BLOCK; ++j)
      d[j] |= data[i * BLOCK + j];
  }
}

/* Without the lock: write the N blocks SNAP (contents DATA) to their
 * places in the file, then sync.  On failure, -1 with errno set and
 * the reason in WHY (for poison).
 */
static int
write_blocks (struct qdb_tracker *t, const struct qdb_queued_block *snap,
              const uint8_t *data, size_t n, char *why, size_t whylen)
{
  struct qdb_io *io = t->io;
  size_t i;

  for (i = 0; i < n; ++i) {
    const struct qdb_tracked *tr = &t->tracked[snap[i].t];
    uint64_t off = tr->raw_offset ? tr->raw_offset + snap[i].block * BLOCK
      : qdb_bits_file_offset (t->qdb, tr->bm, snap[i].block * BLOCK);
    /* 0: an ALL_ONES cluster, whose bits are all set already. */
    if (off && io->pwrite (io->opaque, data + i * BLOCK, BLOCK, off) == -1) {
      int e = errno;
      snprintf (why, whylen, "writing bitmap \"%s\" at offset %" PRIu64
                ": %s", tr->bm->name, off, strerror (e));
      errno = e;
      return -1;
    }
  }
  if (io->sync (io->opaque) == -1) {
    int e = errno;
    snprintf (why, whylen, "fdatasync: %s", strerror (e));
    errno = e;
    return -1;
  }
  return 0;
}

/* Called with the lock held and no commit in flight: write SNAP with
 * the lock dropped, marking a commit in flight meanwhile.  On failure
 * the tracker is poisoned and errno set.
 */
static int
write_snapshot (struct qdb_tracker *t, const struct qdb_queued_block *snap,
                const uint8_t *data, size_t n)
{
  char why[256];
  int r, saved_errno = 0;

  t->commit_in_progress = true;
  pthread_mutex_unlock (&t->lock);
  r = write_blocks (t, snap, data, n, why, sizeof why);
  if (r == -1)
    saved_errno = errno;
  pthread_mutex_lock (&t->lock);
  if (r == 0)
    snapshot_durable (t, snap, data, n);
  else
    qdb_tracker_poison (t, why);
  t->commit_in_progress = false;
  pthread_cond_broadcast (&t->changed);
  errno = saved_errno;
  return r;
}

/* Called with the lock held, as the commit leader. */
static int
commit (struct qdb_tracker *t)
{
  CLEANUP_FREE struct qdb_queued_block *snap = NULL;
  CLEANUP_FREE uint8_t *data = NULL;
  size_t n;

  if (take_snapshot (t, &t->queue, &snap, &data, &n) == -1)
    return -1;
  t->stat_commits++;
  t->stat_blocks += n;
  if (t->on_commit)
    t->on_commit (t->stat_commits, n);
  return write_snapshot (t, snap, data, n);
}

/*----------------------------------------------------------------------
 * Lazy tracking.
 */

/* Called with the lock held: set the fine bits of [offset,
 * offset+count) in memory, queue their blocks for the next checkpoint,
 * and note the regions in region_epoch.
 */
static int
lazy_mark (struct qdb_tracker *t, uint64_t offset, uint32_t count)
{
  const struct qdb_bitmap *rbm = &t->region_bm;
  size_t i;
  uint64_t b;

  for (i = 0; i + 1 < t->nr_tracked; ++i) {
    struct qdb_bitmap *bm = t->tracked[i].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = MIN ((offset + count - 1) / bm->granularity,
                         bm->nr_granules - 1);

    if (first > last || bits_all_set (bm->bits, first, last + 1))
      continue;
    bits_set_range (bm->bits, first, last + 1);
    for (b = (first / 8) / BLOCK; b <= (last / 8) / BLOCK; ++b)
      if (enqueue (t, &t->lazy_queue, i, b) == -1)
        return -1;
  }
  bits_set_range (t->region_epoch, offset / rbm->granularity,
                  MIN ((offset + count - 1) / rbm->granularity + 1,
                       rbm->nr_granules));
  return 0;
}

void
qdb_tracker_checkpoint (struct qdb_tracker *t)
{
  CLEANUP_FREE struct qdb_queued_block *snap = NULL;
  CLEANUP_FREE uint8_t *data = NULL;
  struct qdb_bitmap *rbm = &t->region_bm;
  struct qdb_tracked *rt;
  size_t n, i;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  while (t->commit_in_progress ||
         __atomic_load_n (&t->command_pending, __ATOMIC_SEQ_CST))
    pthread_cond_wait (&t->changed, &t->lock);
  if (!t->lazy || qdb_tracker_poisoned (t) || t->nr_tracked == 0)
    return;
  if (take_snapshot (t, &t->lazy_queue, &snap, &data, &n) == -1)
    return;
  memset (t->region_epoch, 0, rbm->bits_len);

  if (n > 0) {
    t->stat_checkpoints++;
    if (write_snapshot (t, snap, data, n) == -1)
      return;
  }

  /* Every fine bit set before the snapshot is durable now: keep only
   * the regions written since.
   */
  rt = &t->tracked[t->nr_tracked - 1];
  for (i = 0; i < rbm->bits_len; ++i) {
    if (rbm->bits[i] == t->region_epoch[i])
      continue;
    rt->durable[i] &= t->region_epoch[i];
    rbm->bits[i] = t->region_epoch[i];
    if (enqueue (t, &t->queue, t->nr_tracked - 1, i / BLOCK) == -1) {
      qad_error ("realloc: %m");
      return;                   /* the map only stays a superset */
    }
  }
  if (t->queue.len > 0)
    commit (t);
}

static void *
checkpoint_thread (void *arg)
{
  struct qdb_tracker *t = arg;

  for (;;) {
    struct timespec ts;

    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += t->checkpoint_interval;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
      while (!t->ckpt_stop && !t->ckpt_requested &&
             pthread_cond_timedwait (&t->ckpt_cond, &t->lock, &ts)
             != ETIMEDOUT)
        ;
      if (t->ckpt_stop)
        return NULL;
      t->ckpt_requested = false;
    }
    qdb_tracker_checkpoint (t);
  }
}

int
qdb_tracker_start_checkpoints (struct qdb_tracker *t)
{
  int err;

  err = pthread_create (&t->ckpt_thread, NULL, checkpoint_thread, t);
  if (err) {
    errno = err;
    qad_error ("pthread_create: %m");
    return -1;
  }
  t->ckpt_started = true;
  return 0;
}

void
qdb_tracker_request_checkpoint (struct qdb_tracker *t)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  if (!t->ckpt_requested && t->lazy_queue.len > 0) {
    t->ckpt_requested = true;
    pthread_cond_signal (&t->ckpt_cond);
  }
}

void
qdb_tracker_stop (struct qdb_tracker *t)
{
  if (t->ckpt_started) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
      t->ckpt_stop = true;
      pthread_cond_broadcast (&t->ckpt_cond);
    }
    pthread_join (t->ckpt_thread, NULL);
    t->ckpt_started = false;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  while (t->commit_in_progress)
    pthread_cond_wait (&t->changed, &t->lock);
}

/*----------------------------------------------------------------------
 * Marking.
 */

/* Called with the lock held: are the granules of [offset, offset+count)
 * durable in every tracked bitmap (lazy: in the region map)?
 */
static bool
all_durable (struct qdb_tracker *t, uint64_t offset, uint32_t count)
{
  size_t i;

  for (i = t->lazy ? t->nr_tracked - 1 : 0; i < t->nr_tracked; ++i) {
    const struct qdb_bitmap *bm = t->tracked[i].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = (offset + count - 1) / bm->granularity;
    if (!bits_all_set (t->tracked[i].durable, first, last + 1))
      return false;
  }
  return true;
}

/* Called with the lock held: set the bits in mem and queue them. */
static int
set_and_queue (struct qdb_tracker *t, uint64_t offset, uint32_t count,
               int *err)
{
  size_t i;

  for (i = t->lazy ? t->nr_tracked - 1 : 0; i < t->nr_tracked; ++i) {
    struct qdb_bitmap *bm = t->tracked[i].bm;
    uint64_t first = offset / bm->granularity;
    uint64_t last = (offset + count - 1) / bm->granularity;
    uint64_t b;

    if (last >= bm->nr_granules) {
      qad_error ("%s: request at offset %" PRIu64 " length %" PRIu32
                 " is past the end of bitmap \"%s\" (%" PRIu64 " bytes)",
                 t->name, offset, count, bm->name, bm->disk_size);
      *err = EIO;
      return -1;
    }
    if (bits_all_set (bm->bits, first, last + 1))
      continue;                 /* set, commit pending or in flight */
    bits_set_range (bm->bits, first, last + 1);
    for (b = (first / 8) / BLOCK; b <= (last / 8) / BLOCK; ++b)
      if (enqueue (t, &t->queue, i, b) == -1) {
        qad_error ("realloc: %m");
        *err = ENOMEM;
        return -1;
      }
  }
  return 0;
}

/* Called with the lock held: qdb_tracker_mark's work. */
static int
mark_locked (struct qdb_tracker *t, uint64_t offset, uint32_t count,
             int *err)
{
  if (count == 0 || t->nr_tracked == 0)
    return 0;
  if (qdb_tracker_refuse_if_poisoned (t, err) == -1)
    return -1;
  if (t->lazy && lazy_mark (t, offset, count) == -1) {
    qad_error ("realloc: %m");
    *err = ENOMEM;
    return -1;
  }
  if (all_durable (t, offset, count))
    return 0;                   /* the fast path */

  t->stat_first_touch++;
  if (set_and_queue (t, offset, count, err) == -1)
    return -1;

  while (!all_durable (t, offset, count)) {
    if (qdb_tracker_refuse_if_poisoned (t, err) == -1)
      return -1;
    if (t->commit_in_progress)
      pthread_cond_wait (&t->changed, &t->lock);
    else if (t->queue.len == 0) {
      /* Cannot happen: bits set in mem are queued, in flight or
       * durable.  Refuse rather than loop.
       */
      qad_error ("%s: internal error: bits not durable and not queued",
                 t->name);
      *err = EIO;
      return -1;
    }
    else if (commit (t) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
  }
  return 0;
}

int
qdb_tracker_mark (struct qdb_tracker *t, uint64_t offset, uint32_t count,
                  int *err)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  return mark_locked (t, offset, count, err);
}

/*----------------------------------------------------------------------
 * Requests in flight and commands.
 */

/* Called with the lock held: wait out a command, then count one more
 * request in flight.
 */
static void
begin_io_locked (struct qdb_tracker *t)
{
  while (__atomic_load_n (&t->command_pending, __ATOMIC_SEQ_CST))
    pthread_cond_wait (&t->changed, &t->lock);
  __atomic_add_fetch (&t->in_flight, 1, __ATOMIC_SEQ_CST);
}

void
qdb_tracker_begin_io (struct qdb_tracker *t)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  begin_io_locked (t);
}

int
qdb_tracker_begin_change (struct qdb_tracker *t, uint64_t offset,
                          uint32_t count, int *err)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
  begin_io_locked (t);
  return mark_locked (t, offset, count, err);
}

/* Without the lock unless a command waits: the decrement and the read
 * of command_pending here, and the store of command_pending and the
 * read of in_flight in qdb_tracker_begin_command, are sequentially
 * consistent, so either this request sees the command and wakes it
 * (under the lock, so the wakeup cannot fall before its wait) or the
 * command sees in_flight already 0.
 */
void
qdb_tracker_end_io (struct qdb_tracker *t)
{
  if (__atomic_sub_fetch (&t->in_flight, 1, __ATOMIC_SEQ_CST) == 0 &&
      __atomic_load_n (&t->command_pending, __ATOMIC_SEQ_CST)) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&t->lock);
    pthread_cond_broadcast (&t->changed);
  }
}

void
qdb_tracker_begin_command (struct qdb_tracker *t, bool drain)
{
  pthread_mutex_lock (&t->lock);
  if (drain) {
    __atomic_store_n (&t->command_pending, true, __ATOMIC_SEQ_CST);
    while (__atomic_load_n (&t->in_flight, __ATOMIC_SEQ_CST) > 0 ||
           t->commit_in_progress)
      pthread_cond_wait (&t->changed, &t->lock);
  }
}

void
qdb_tracker_end_command (struct qdb_tracker *t)
{
  __atomic_store_n (&t->command_pending, false, __ATOMIC_SEQ_CST);
  pthread_cond_broadcast (&t->changed);
  pthread_mutex_unlock (&t->lock);
}
