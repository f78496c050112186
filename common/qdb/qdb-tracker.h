/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Changed-block tracking into an open QDB file: the persistence engine
 * of the dirty-bitmap filter (docs/specs/qdb.txt, "Tracking"), without
 * nbdkit.  Every byte it writes and every sync goes through the
 * struct qdb_io it is given, so that the unit test can fail any of
 * them and watch what is durable when.
 *
 * Notes on the design.
 *
 * Strict tracking (the persist-before-write protocol of the spec).
 * Whoever is about to change [offset, offset+count) of the disk calls
 * qdb_tracker_mark first, and passes the request down only when it
 * returns 0.  Each enabled bitmap has two bit arrays in memory: "mem"
 * (bm->bits: bits set, maybe not durable yet) and "durable" (bits known
 * to be in the file after a sync).  When every granule of a request is
 * already durable in every enabled bitmap, marking costs a bit test
 * under the lock.  Otherwise it sets the bits in mem, queues the
 * 512-byte blocks of bitmap data that changed, and waits until its
 * granules are durable.  Group commit: the first waiter that finds no
 * commit in flight becomes the leader: it takes a snapshot of every
 * queued block (so the queue is empty again for others), drops the
 * lock, writes the blocks and syncs ONCE, then marks the snapshot
 * durable and wakes everybody.  Requests that arrived while a commit
 * was in flight are handled by the next leader, all with one sync.
 * Bits only go from 0 to 1 here, so a torn block write is still a
 * superset of the previous durable state.
 *
 * Lazy tracking (the region map of the spec).  What must be durable
 * before a request is passed down is then the coarse region map instead
 * of the fine bits: the region map is one more entry of "tracked"
 * (region_bm, stored contiguously at raw_offset) and all_durable looks
 * at it alone.  Fine bits are set in memory and their blocks go to
 * lazy_queue, written by qdb_tracker_checkpoint (the checkpoint thread,
 * every checkpoint_interval seconds and soon after each flush) with one
 * sync.  region_epoch records the regions written since the last
 * checkpoint's snapshot; after the fine blocks are durable, regions not
 * in region_epoch are cleared in the map (their durable bits first, so
 * that a later write there commits the region again, after the clearing
 * write, through the same group commit).  After a crash the reader
 * (qdb_read) ORs the marked regions into the enabled bitmaps.
 *
 * Poison.  After a failed write or sync of the bitmap, or when the
 * caller says durability below is in doubt (qdb_tracker_poison), every
 * later mark, flush and command fails with EIO until restart, and one
 * line says so.
 *
 * Draining.  A command that replaces the model (qdb_tracker_quiesce)
 * waits until no request is between qdb_tracker_begin_io (or _change)
 * and qdb_tracker_end_io and no commit or checkpoint runs; new
 * requests wait in qdb_tracker_begin_io meanwhile.  A write takes the
 * lock once: qdb_tracker_begin_change counts it and marks it, and
 * qdb_tracker_end_io only takes the lock when a command waits.
 *
 * Lock order: the QDB file's whole-file lock (an OFD lock, held from
 * open to exit) is taken before the tracker exists; then "lock" below;
 * a command that replaces the file (qdb_replace_file, qdb-replace.h)
 * holds "lock" while it takes the new file's whole-file lock, which
 * never blocks (F_OFD_SETLK).  A freeze's own locks (qdb-freeze.c) are
 * taken without "lock" by requests, and under it only by a command
 * (creating or freeing a freeze), when no request is in flight.  No
 * I/O runs under "lock" except during such a command, when nothing
 * else can run.
 */

#ifndef QAD_QDB_TRACKER_H
#define QAD_QDB_TRACKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qdb.h"
#include "vector.h"

#define QDB_TRACKER_BLOCK 512   /* unit of bitmap data persisted */

struct qdb_tracked {
  struct qdb_bitmap *bm;        /* bm->bits is "mem" */
  uint64_t raw_offset;          /* region map: where its bits are stored */
  uint8_t *durable;             /* bits known durable */
  uint8_t *queued;              /* one byte per block of bits */
};

struct qdb_queued_block {
  size_t t;                     /* index into tracked */
  uint64_t block;
};

DEFINE_VECTOR_TYPE (qdb_block_queue, struct qdb_queued_block);

struct qdb_tracker {
  /* Set by qdb_tracker_init, read-only afterwards. */
  const char *name;             /* the QDB file, for messages */
  struct qdb_io *io;            /* not owned; its opaque may change */
  bool lazy;
  unsigned checkpoint_interval; /* seconds */

  /* Protects everything below except "failed": the model and every
   * bitmap's mem and durable bits and queued flags, both queues,
   * commit_in_progress, the checkpoint thread's flags and the
   * statistics.  Bit arrays are read-modify-
   * written a byte at a time, so every access to them, reads included,
   * holds it.  Never held across I/O (but see the lock order).
   */
  pthread_mutex_t lock;
  /* Broadcast when a commit ends, when in_flight drops to 0 during a
   * command and when a command ends.
   */
  pthread_cond_t changed;
  struct qdb_file *qdb;         /* the model (owned), bits loaded */
  uint64_t disk_size;
  struct qdb_tracked *tracked;  /* one per enabled bitmap, + region map */
  size_t nr_tracked;
  qdb_block_queue queue;        /* blocks for the next commit */
  bool commit_in_progress;
  /* Atomic: written under the lock, but in_flight also decremented
   * and command_pending read without it (qdb_tracker_end_io).
   */
  uint64_t in_flight;
  bool command_pending;

  /* Lazy tracking: the region map (last entry of tracked), regions
   * written since the last checkpoint snapshot, fine bitmap blocks not
   * yet written, and the checkpoint thread.
   */
  struct qdb_bitmap region_bm;
  uint8_t *region_epoch;
  qdb_block_queue lazy_queue;
  pthread_cond_t ckpt_cond;
  pthread_t ckpt_thread;
  bool ckpt_started, ckpt_stop, ckpt_requested;

  /* Set once with __atomic_exchange_n, read with __atomic_load_n. */
  int failed;

  uint64_t stat_first_touch, stat_commits, stat_blocks, stat_checkpoints;

  /* Optional, set before the model: called under the lock as each
   * group commit starts, with its number and how many blocks it writes
   * (the filter's debug flag).
   */
  void (*on_commit) (uint64_t nr, size_t blocks);
};

/* IO must stay valid (and keep naming the QDB file) while the tracker
 * lives.  Returns 0 or -1 (ENOMEM).
 */
extern int qdb_tracker_init (struct qdb_tracker *t, const char *name,
                             struct qdb_io *io, bool lazy,
                             unsigned checkpoint_interval);
/* Stops the checkpoint thread, frees the tracker and the model. */
extern void qdb_tracker_free (struct qdb_tracker *t);

/* Take over QDB (a model with bits loaded, as written in the file,
 * with every table entry of an enabled bitmap allocated and, in lazy
 * mode, an all-clear region map) and track into it.  Called without
 * requests (at start) or with the lock held during a command: the
 * previous model is freed.  Returns 0 or -1 (reported).
 */
extern int qdb_tracker_set_model (struct qdb_tracker *t, struct qdb_file *qdb,
                                  uint64_t disk_size);

/* Lazy mode: start the checkpoint thread. */
extern int qdb_tracker_start_checkpoints (struct qdb_tracker *t);
/* Stop it (if started) and wait for any commit: afterwards nothing
 * runs in the background.  Returns with the lock NOT held.
 */
extern void qdb_tracker_stop (struct qdb_tracker *t);

/* Before a request that changes [offset, offset+count) is passed
 * down: its granules durable in every enabled bitmap (strict) or its
 * regions durable in the region map (lazy).  -1 with *ERR set.
 */
extern int qdb_tracker_mark (struct qdb_tracker *t, uint64_t offset,
                             uint32_t count, int *err);

/* Lazy mode: one checkpoint now (the checkpoint thread calls this). */
extern void qdb_tracker_checkpoint (struct qdb_tracker *t);
/* Lazy mode: ask the checkpoint thread for a checkpoint soon. */
extern void qdb_tracker_request_checkpoint (struct qdb_tracker *t);

/* A flush: refuse when poisoned, call FLUSH_BELOW (which returns -1
 * with *ERR set on failure), poison on its failure, and in lazy mode
 * ask for a checkpoint.
 */
typedef int (*qdb_flush_below) (void *opaque, int *err);
extern int qdb_tracker_flush (struct qdb_tracker *t, qdb_flush_below flush,
                              void *opaque, int *err);

/* After a request below with FUA (when FUA) returned R with *ERR:
 * poison unless the error says nothing about durability.  Returns R.
 */
extern int qdb_tracker_after_below (struct qdb_tracker *t, const char *what,
                                    bool fua, int r, const int *err);

/* Durability is in doubt because of WHY: report once, refuse all. */
extern void qdb_tracker_poison (struct qdb_tracker *t, const char *why);

static inline bool
qdb_tracker_poisoned (struct qdb_tracker *t)
{
  return __atomic_load_n (&t->failed, __ATOMIC_ACQUIRE) != 0;
}

/* -1 with *ERR = EIO when poisoned, else 0. */
extern int qdb_tracker_refuse_if_poisoned (struct qdb_tracker *t, int *err);

/* Around every request that reads or changes the disk through state a
 * command may change (marking, freezes, the request below).
 */
extern void qdb_tracker_begin_io (struct qdb_tracker *t);
extern void qdb_tracker_end_io (struct qdb_tracker *t);
/* qdb_tracker_begin_io then qdb_tracker_mark, under one acquisition of
 * the lock (the write path).  qdb_tracker_end_io follows whatever it
 * returns.
 */
extern int qdb_tracker_begin_change (struct qdb_tracker *t, uint64_t offset,
                                     uint32_t count, int *err);

/* Take the lock for a command.  With DRAIN, also wait until nothing
 * is in flight and no commit runs, holding back new requests until
 * qdb_tracker_end_command (which releases the lock).
 */
extern void qdb_tracker_begin_command (struct qdb_tracker *t, bool drain);
extern void qdb_tracker_end_command (struct qdb_tracker *t);

#endif /* QAD_QDB_TRACKER_H */
