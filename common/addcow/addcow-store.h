/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The COW bitmap of an open add-cow file, and the rules by which its
 * bits reach the file (docs/specs/add-cow.txt, "Durability").
 *
 * Notes on the design.
 *
 * The store owns the in-memory bitmap and decides when each bit may
 * be written to the add-cow file; it never sees the image.  Whoever
 * writes the image tells it "these clusters hold their data now"
 * (addcow_store_set), and hands it a callback that flushes the image
 * (addcow_store_flush).  All I/O on the add-cow file goes through
 * struct addcow_store_io, so that the unit test can fail any write or
 * sync and watch the order of events.
 *
 * Three persistence modes, chosen by the caller from what the image
 * promises:
 *  AT_FLUSH: a flush of the image covers every writer's data (an NBD
 *    plugin with multi-conn).  Bits are set in memory and their bitmap
 *    chunks marked dirty; a flush snapshots the dirty chunks, flushes
 *    the image, writes the snapshot and syncs.  "durable" mirrors what
 *    the file holds after each sync, for FUA decisions.
 *  AT_WRITE: a flush of the image may cover only the caller's own
 *    writes.  The caller writes a cluster's data durably before
 *    addcow_store_set, which writes and syncs the bits before setting
 *    them in memory: a bit seen as 1 is always a durable bit.
 *  AT_CLOSE: the image cannot be flushed.  As AT_FLUSH, but the image
 *    flush callback is not called; the caller flushes at a clean close.
 *
 * Invariants: bits only go 0 -> 1; a bit reaches the file only after
 * the data it covers is durable; ALL_ALLOCATED reaches the file only
 * after every bit has; after a failed sync (of the image or the file)
 * the store is poisoned and every later addcow_store_set and
 * addcow_store_flush fails with EIO.
 *
 * Lock order: flush_lock, then lock.  Neither is held by the caller
 * when it calls in; the image flush callback runs under flush_lock.
 */

#ifndef QAD_ADDCOW_STORE_H
#define QAD_ADDCOW_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum addcow_persist_mode {
  ADDCOW_PERSIST_AT_FLUSH,
  ADDCOW_PERSIST_AT_WRITE,
  ADDCOW_PERSIST_AT_CLOSE,
};

/* Bitmap bytes per dirty-tracking chunk. */
#define ADDCOW_STORE_CHUNK 4096

/* I/O on the add-cow file.  Both return -1 with errno set. */
struct addcow_store_io {
  int (*pwrite) (void *opaque, const void *buf, size_t count,
                 uint64_t offset);
  int (*sync) (void *opaque);
  void *opaque;
};

/* The usual I/O: full_pwrite and fdatasync on *FDP. */
extern void addcow_store_io_fd (struct addcow_store_io *io, int *fdp);

/* Rewrite only the compatible features field (bytes 32-39) of the
 * add-cow file NAME with COMPAT, through IO, without syncing: one
 * aligned 8-byte write, so it cannot tear, and names written by
 * another implementation stay where they are.  The store's
 * ALL_ALLOCATED and qad-img check --repair both write it so.  0, or -1
 * after qad_error.
 */
extern int addcow_write_compat_features (const struct addcow_store_io *io,
                                         const char *name, uint64_t compat);

/* Flushes the image; -1 with errno set. */
typedef int (*addcow_image_flush_fn) (void *opaque);

struct addcow_store {
  /* Set by addcow_store_init, read-only afterwards. */
  const char *name;                     /* the add-cow file, for errors */
  struct addcow_store_io io;
  enum addcow_persist_mode mode;
  uint64_t header_size;                 /* offset of the bitmap */
  uint64_t nclusters, bmlen;

  /* Serialises flushes and, in AT_WRITE mode, every bitmap write. */
  pthread_mutex_t flush_lock;
  /* Protects bitmap, dirty, durable, nr_set and compat_features.
   * Never held across I/O.
   */
  pthread_mutex_t lock;
  uint8_t *bitmap;                      /* NULL: ALL_ALLOCATED at open */
  uint8_t *dirty;                       /* one flag per chunk to write */
  uint8_t *durable;                     /* AT_FLUSH: the file's bits */
  uint64_t nr_set;
  uint64_t compat_features;             /* as in the file */

  /* Only go false -> true; read without a lock. */
  bool all_set;                         /* every bit is 1 in memory */
  bool poisoned;
};

/* Take over BITMAP (BMLEN bytes for NCLUSTERS clusters; NULL when
 * COMPAT_FEATURES has ALL_ALLOCATED).  IO is copied.  -1 on ENOMEM.
 */
extern int addcow_store_init (struct addcow_store *st, const char *name,
                              const struct addcow_store_io *io,
                              enum addcow_persist_mode mode,
                              uint64_t header_size, uint64_t compat_features,
                              uint8_t *bitmap, uint64_t bmlen,
                              uint64_t nclusters);
extern void addcow_store_free (struct addcow_store *st);

static inline bool
addcow_store_all_set (struct addcow_store *st)
{
  return __atomic_load_n (&st->all_set, __ATOMIC_ACQUIRE);
}

static inline bool
addcow_store_poisoned (struct addcow_store *st)
{
  return __atomic_load_n (&st->poisoned, __ATOMIC_ACQUIRE);
}

/* Durability is in doubt after WHAT failed with ERR: report it once
 * and refuse every later set and flush.
 */
extern void addcow_store_poison (struct addcow_store *st, const char *what,
                                 int err);

/* Run of equal bits from cluster C, at most to END (in memory). */
extern uint64_t addcow_store_run (struct addcow_store *st, uint64_t c,
                                  uint64_t end, bool *value);
/* Are clusters [C0, C1) all 1 in memory? */
extern bool addcow_store_range_set (struct addcow_store *st, uint64_t c0,
                                    uint64_t c1);
/* Are clusters [C0, C1) all 1 in the file itself? */
extern bool addcow_store_range_durable (struct addcow_store *st, uint64_t c0,
                                        uint64_t c1);

/* Clusters [C0, C1) hold their data in the image now (durably, in
 * AT_WRITE mode).  Sets their bits as the mode says.
 */
extern int addcow_store_set (struct addcow_store *st, uint64_t c0,
                             uint64_t c1);

/* The flush sequence: snapshot, FLUSH_IMAGE (unless AT_CLOSE), bitmap
 * writes, sync, ALL_ALLOCATED.  On failure the snapshot's chunks are
 * dirty again.
 */
extern int addcow_store_flush (struct addcow_store *st,
                               addcow_image_flush_fn flush_image,
                               void *opaque);

/* Is there anything a flush would write? */
extern bool addcow_store_have_dirty (struct addcow_store *st);

#endif /* QAD_ADDCOW_STORE_H */
