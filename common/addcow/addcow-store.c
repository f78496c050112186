/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The add-cow bitmap store: see addcow-store.h for the design. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-store.h"
#include "byte-swapping.h"
#include "cleanup.h"
#include "full-io.h"
#include "minmax.h"
#include "poisoned.h"
#include "qad-error.h"

#define CHUNK ADDCOW_STORE_CHUNK

void
addcow_store_io_fd (struct addcow_store_io *io, int *fdp)
{
  io->pwrite = fd_io_pwrite;
  io->sync = fd_io_sync;
  io->opaque = fdp;
}

int
addcow_write_compat_features (const struct addcow_store_io *io,
                              const char *name, uint64_t compat)
{
  uint8_t buf[8];

  store_le64 (buf, compat);
  if (io->pwrite (io->opaque, buf, sizeof buf,
                  ADDCOW_OFF_COMPAT_FEATURES) == -1) {
    qad_error ("%s: writing compat features: %m", name);
    return -1;
  }
  return 0;
}

int
addcow_store_init (struct addcow_store *st, const char *name,
                   const struct addcow_store_io *io,
                   enum addcow_persist_mode mode,
                   uint64_t header_size, uint64_t compat_features,
                   uint8_t *bitmap, uint64_t bmlen, uint64_t nclusters)
{
  memset (st, 0, sizeof *st);
  pthread_mutex_init (&st->flush_lock, NULL);
  pthread_mutex_init (&st->lock, NULL);
  st->name = name;
  st->io = *io;
  st->mode = mode;
  st->header_size = header_size;
  st->compat_features = compat_features;
  st->nclusters = nclusters;
  st->bitmap = bitmap;
  if (bitmap == NULL) {
    st->all_set = true;
    st->nr_set = nclusters;
    return 0;
  }
  st->bmlen = bmlen;
  st->dirty = calloc (bmlen / CHUNK + 1, 1);
  if (st->dirty == NULL)
    goto nomem;
  if (mode == ADDCOW_PERSIST_AT_FLUSH) {
    st->durable = malloc (bmlen ? bmlen : 1);
    if (st->durable == NULL)
      goto nomem;
    memcpy (st->durable, bitmap, bmlen);
  }
  st->nr_set = bits_count (bitmap, 0, nclusters);
  st->all_set = st->nr_set == nclusters && nclusters > 0;
  return 0;

 nomem:
  qad_error ("%s: cannot allocate the bitmap's bookkeeping: %m", name);
  st->bitmap = NULL;            /* the caller still owns it */
  addcow_store_free (st);
  errno = ENOMEM;
  return -1;
}

void
addcow_store_free (struct addcow_store *st)
{
  free (st->bitmap);
  free (st->dirty);
  free (st->durable);
  st->bitmap = st->dirty = st->durable = NULL;
  pthread_mutex_destroy (&st->flush_lock);
  pthread_mutex_destroy (&st->lock);
}

void
addcow_store_poison (struct addcow_store *st, const char *what, int err)
{
  if (!__atomic_exchange_n (&st->poisoned, true, __ATOMIC_ACQ_REL))
    qad_error ("%s: %s failed (%s): what was written may not be "
               "durable; refusing every further write and flush with EIO "
               "until restart",
               st->name, what, strerror (err));
}

uint64_t
addcow_store_run (struct addcow_store *st, uint64_t c, uint64_t end,
                  bool *value)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);

  if (addcow_store_all_set (st)) {
    *value = true;
    return end - c;
  }
  return bits_run (st->bitmap, c, end, value);
}

bool
addcow_store_range_set (struct addcow_store *st, uint64_t c0, uint64_t c1)
{
  bool v;

  return addcow_store_run (st, c0, c1, &v) == c1 - c0 && v;
}

bool
addcow_store_range_durable (struct addcow_store *st, uint64_t c0,
                            uint64_t c1)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);

  if (st->compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)
    return true;
  switch (st->mode) {
  case ADDCOW_PERSIST_AT_WRITE:         /* memory bits are durable bits */
    return bits_all_set (st->bitmap, c0, c1);
  case ADDCOW_PERSIST_AT_FLUSH:
    return bits_all_set (st->durable, c0, c1);
  case ADDCOW_PERSIST_AT_CLOSE:         /* nothing is ever durable */
  default:
    return false;
  }
}

/* Caller holds lock.  MARK_DIRTY: a later flush must write them. */
static void
set_in_memory (struct addcow_store *st, uint64_t c0, uint64_t c1,
               bool mark_dirty)
{
  uint64_t c;

  for (c = c0; c < c1; ++c) {
    if (!bit_test (st->bitmap, c)) {
      bit_set (st->bitmap, c);
      if (mark_dirty)
        st->dirty[(c >> 3) / CHUNK] = 1;
      st->nr_set++;
    }
  }
  if (st->nr_set == st->nclusters)
    __atomic_store_n (&st->all_set, true, __ATOMIC_RELEASE);
}

/* Sync the add-cow file; a failure poisons the store. */
static int
sync_file (struct addcow_store *st)
{
  if (st->io.sync (st->io.opaque) == -1) {
    int err = errno;
    addcow_store_poison (st, "fdatasync of the add-cow file", err);
    errno = err;
    return -1;
  }
  return 0;
}

/* Does the file still lack ALL_ALLOCATED although every bit is 1?
 * Caller holds lock.
 */
static bool
all_allocated_pending (struct addcow_store *st)
{
  return st->nr_set == st->nclusters && st->nclusters > 0 &&
    !(st->compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
}

/* Write ALL_ALLOCATED (bytes 32-39 alone) and sync.  Every bit must
 * be durable already.  Caller holds flush_lock.
 */
static int
persist_all_allocated (struct addcow_store *st)
{
  uint64_t features;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    features = st->compat_features | ADDCOW_COMPAT_ALL_ALLOCATED;
  }
  if (addcow_write_compat_features (&st->io, st->name, features) == -1 ||
      sync_file (st) == -1)
    return -1;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    st->compat_features = features;
  }
  return 0;
}

/* AT_WRITE: write the bits of [C0, C1) with every bit persisted before
 * them (all in memory, since memory bits are set only once durable and
 * this runs under flush_lock), sync, then set them in memory.
 */
static int
persist_now (struct addcow_store *st, uint64_t c0, uint64_t c1)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->flush_lock);
  uint64_t b0 = c0 >> 3, b1 = ((c1 - 1) >> 3) + 1, c;
  CLEANUP_FREE uint8_t *bytes = malloc (b1 - b0);
  bool all;

  if (bytes == NULL) {
    qad_error ("%s: malloc: %m", st->name);
    return -1;
  }
  if (refuse_if_poisoned (addcow_store_poisoned (st), &errno) == -1)
    return -1;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    memcpy (bytes, st->bitmap + b0, b1 - b0);
  }
  for (c = c0; c < c1; ++c)
    bit_set (bytes, c - b0 * 8);
  if (st->io.pwrite (st->io.opaque, bytes, b1 - b0,
                     st->header_size + b0) == -1) {
    qad_error ("%s: writing bitmap at offset %" PRIu64 ": %m",
               st->name, st->header_size + b0);
    return -1;
  }
  if (sync_file (st) == -1)
    return -1;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    set_in_memory (st, c0, c1, false);
    all = all_allocated_pending (st);
  }
  return all ? persist_all_allocated (st) : 0;
}

int
addcow_store_set (struct addcow_store *st, uint64_t c0, uint64_t c1)
{
  if (c0 >= c1 || addcow_store_all_set (st))
    return 0;
  if (st->mode == ADDCOW_PERSIST_AT_WRITE)
    return persist_now (st, c0, c1);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  set_in_memory (st, c0, c1, true);
  return 0;
}

struct chunk_copy {
  uint64_t index;
  uint8_t data[CHUNK];
};

/* Copy the dirty chunks and clear their flags.  Caller holds lock.
 * Returns the number of copies, or -1.
 */
static ssize_t
collect_dirty (struct addcow_store *st, struct chunk_copy **copies_ret)
{
  uint64_t nchunks = st->bmlen / CHUNK + (st->bmlen % CHUNK != 0), k;
  struct chunk_copy *copies = NULL;
  size_t n = 0, i;

  for (k = 0; k < nchunks; ++k)
    n += st->dirty[k];
  if (n) {
    copies = malloc (n * sizeof *copies);
    if (copies == NULL) {
      qad_error ("%s: malloc: %m", st->name);
      return -1;
    }
  }
  for (i = 0, k = 0; k < nchunks; ++k) {
    if (st->dirty[k]) {
      copies[i].index = k;
      memcpy (copies[i].data, st->bitmap + k * CHUNK,
              MIN ((uint64_t) CHUNK, st->bmlen - k * CHUNK));
      st->dirty[k] = 0;
      i++;
    }
  }
  *copies_ret = copies;
  return n;
}

int
addcow_store_flush (struct addcow_store *st,
                    addcow_image_flush_fn flush_image, void *opaque)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->flush_lock);
  CLEANUP_FREE struct chunk_copy *copies = NULL;
  ssize_t nr_copies = 0, i;
  bool set_all = false;
  int err;

  if (refuse_if_poisoned (addcow_store_poisoned (st), &errno) == -1)
    return -1;
  if (st->bitmap) {
    /* Every bit set so far (AT_WRITE: none is dirty): the image flush
     * below covers its data.
     */
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    nr_copies = collect_dirty (st, &copies);
    if (nr_copies == -1)
      return -1;
    set_all = all_allocated_pending (st);
  }

  /* 1. The image: the data behind every bit in the snapshot. */
  if (st->mode != ADDCOW_PERSIST_AT_CLOSE && flush_image (opaque) == -1) {
    err = errno;
    addcow_store_poison (st, "a flush of the image", err);
    goto redirty;
  }

  /* 2. The bitmap, then the header. */
  for (i = 0; i < nr_copies; ++i) {
    uint64_t off = copies[i].index * CHUNK;
    if (st->io.pwrite (st->io.opaque, copies[i].data,
                       MIN ((uint64_t) CHUNK, st->bmlen - off),
                       st->header_size + off) == -1) {
      err = errno;
      qad_error ("%s: writing bitmap at offset %" PRIu64 ": %m",
                 st->name, st->header_size + off);
      goto redirty;
    }
  }
  if (nr_copies && sync_file (st) == -1) {
    err = errno;
    goto redirty;
  }
  if (st->durable) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    for (i = 0; i < nr_copies; ++i) {
      uint64_t off = copies[i].index * CHUNK;
      memcpy (st->durable + off, copies[i].data,
              MIN ((uint64_t) CHUNK, st->bmlen - off));
    }
  }
  return set_all ? persist_all_allocated (st) : 0;

 redirty:
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
    for (i = 0; i < nr_copies; ++i)
      st->dirty[copies[i].index] = 1;
  }
  errno = err;
  return -1;
}

bool
addcow_store_have_dirty (struct addcow_store *st)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&st->lock);
  uint64_t k;

  if (st->bitmap == NULL)
    return false;
  if (all_allocated_pending (st))
    return true;
  for (k = 0; k <= st->bmlen / CHUNK; ++k)
    if (st->dirty[k])
      return true;
  return false;
}
