/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * Work on bit-0 clusters (copy-up, zeroing, copy-on-read) holds the
 * cluster range lock, and re-reads the bits once it has it, so two
 * requests never copy up the same cluster at once and a copy-up never
 * overwrites data a concurrent request has just written.  A bit is set
 * only after the whole cluster's data has been written to the image;
 * when the store persists bits at write (plugin without multi-conn)
 * that data is written with FUA first (cow.store.mode).
 *
 * Lock order: clusters (range lock) -> the store's locks.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "copy-up.h"
#include "minmax.h"
#include "pieces.h"
#include "rangelock.h"

struct cow cow;

/* -D addcow.copyup=1: log each cluster copied up from the backing file
 * (a partial write to a cluster the image does not hold yet).
 */
NBDKIT_DLL_PUBLIC int addcow_debug_copyup;

/* Bit-0 cluster work; see rangelock.h. */
static struct rangelock clusters = RANGELOCK_INIT;

void
cow_free (void)
{
  rangelock_free (&clusters);
}

int
cow_backing_read (void *buf, uint64_t count, uint64_t offset, int *err)
{
  if (cow.backing == NULL) {
    memset (buf, 0, count);
    return 0;
  }
  if (qad_blockdev_pread (cow.backing, buf, count, offset) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* A piece of the zeroes image_zero writes: the plugin below reports. */
struct zero_write {
  nbdkit_next *next;
  uint32_t flags;
};

static int
write_zero_piece (void *opaque, const void *buf, uint64_t count,
                  uint64_t offset)
{
  struct zero_write *zw = opaque;
  int err = 0;

  if (zw->next->pwrite (zw->next, buf, count, offset, zw->flags,
                        &err) == -1) {
    errno = err ? err : EIO;
    return -1;
  }
  return 0;
}

/* Zero a range of the image, emulating when the plugin cannot zero. */
static int
image_zero (nbdkit_next *next, uint64_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct zero_write zw = { next, flags & NBDKIT_FLAG_FUA };
  int r = next->can_zero (next);

  if (r == -1) {
    *err = EIO;
    return -1;
  }
  if (r > NBDKIT_ZERO_NONE)
    return next->zero (next, count, offset, flags, err);
  if (qad_write_zeroes ("the add-cow image", count, offset, write_zero_piece,
                        &zw) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

int
cow_image_write (nbdkit_next *next, const void *buf, uint64_t count,
                 uint64_t offset, uint32_t zflags, bool fua, int *err)
{
  int fua_mode = NBDKIT_FUA_NONE, r;
  uint32_t flags = 0;

  if (fua) {
    fua_mode = next->can_fua (next);
    if (fua_mode == -1) {
      *err = EIO;
      return -1;
    }
    if (fua_mode > NBDKIT_FUA_NONE)
      flags |= NBDKIT_FLAG_FUA;
  }
  if (buf)
    r = next->pwrite (next, buf, count, offset, flags, err);
  else
    r = image_zero (next, count, offset, flags | zflags, err);
  if (r == 0 && fua && fua_mode == NBDKIT_FUA_NONE)
    r = next->flush (next, 0, err);
  if (r == -1 && fua && *err != ENOSPC)
    addcow_store_poison (&cow.store, "a FUA write to the plugin", *err);
  return r;
}

/* Data whose bits are about to be set must be durable first when the
 * store persists bits at write.
 */
static inline bool
bits_need_durable_data (void)
{
  return cow.store.mode == ADDCOW_PERSIST_AT_WRITE;
}

/* Clusters [C0, C1) hold their data: set their bits. */
static int
set_bits (uint64_t c0, uint64_t c1, int *err)
{
  if (addcow_store_set (&cow.store, c0, c1) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* Copy cluster C up into the image, with [DOFF, DOFF+DLEN) of the
 * cluster (disk offsets) replaced by DATA, or by zeroes if DATA is
 * NULL.  Caller holds the range lock and has seen bit 0.
 */
static int
copy_up (nbdkit_next *next, uint64_t c, const void *data,
         uint64_t doff, uint64_t dlen, int *err)
{
  uint64_t start = c * cow.csize;
  uint64_t len = MIN (cow.csize, cow.disk_size - start);
  CLEANUP_FREE char *buf = malloc (len);

  if (buf == NULL) {
    *err = errno;
    nbdkit_error ("malloc: %m");
    return -1;
  }
  if (addcow_debug_copyup)
    nbdkit_debug ("addcow: copy-up of cluster %" PRIu64 " (%" PRIu64
                  " bytes at %" PRIu64 ")", c, len, start);
  if (cow_backing_read (buf, len, start, err) == -1)
    return -1;
  if (data)
    memcpy (buf + (doff - start), data, dlen);
  else
    memset (buf + (doff - start), 0, dlen);
  if (cow_image_write (next, buf, len, start, 0, bits_need_durable_data (),
                       err) == -1)
    return -1;
  return set_bits (c, c + 1, err);
}

/* A run of bit-0 clusters, [OFFSET, REND): partial head and tail
 * clusters are copied up; whole clusters in between are written
 * directly.  DATA is at OFFSET (NULL for zeroes).
 */
static int
write_bit0_run (nbdkit_next *next, enum cow_op op, const char *data,
                uint64_t offset, uint64_t rend, uint32_t flags, int *err)
{
  uint64_t pos = offset;

  while (pos < rend) {
    uint64_t cc = pos >> cow.cbits;
    uint64_t cstart = cc * cow.csize;
    uint64_t cend = MIN (cstart + cow.csize, cow.disk_size);
    uint64_t l;

    if (pos != cstart || rend < cend) {
      l = MIN (rend, cend) - pos;
      if (copy_up (next, cc, op == COW_WRITE ? data + (pos - offset) : NULL,
                   pos, l, err) == -1)
        return -1;
      pos += l;
      continue;
    }
    /* Whole clusters from cc up to the last one rend covers. */
    {
      uint64_t wend = rend == cow.disk_size ? rend
        : rend & ~(cow.csize - 1);
      l = wend - pos;
      if (cow_image_write (next, op == COW_WRITE ? data + (pos - offset)
                           : NULL, l, pos, flags, bits_need_durable_data (),
                           err) == -1 ||
          set_bits (cc, (wend + cow.csize - 1) >> cow.cbits, err) == -1)
        return -1;
      pos = wend;
    }
  }
  return 0;
}

int
cow_write_slow (nbdkit_next *next, enum cow_op op, const char *buf,
                uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0 = offset >> cow.cbits;
  uint64_t c1 = ((offset + count - 1) >> cow.cbits) + 1;
  uint64_t end = offset + count;
  int ret = -1;

  if (rangelock_acquire (&clusters, c0, c1) == -1) {
    *err = errno;
    nbdkit_error ("rangelock: %m");
    return -1;
  }
  while (offset < end) {
    bool v;
    uint64_t rend = cow_run_end (offset, end, &v);
    uint64_t n = rend - offset;

    if (v) {
      if (cow_image_write (next, op == COW_WRITE ? buf : NULL, n, offset,
                           flags, false, err) == -1)
        goto out;
    }
    else if (write_bit0_run (next, op, buf, offset, rend, flags, err) == -1)
      goto out;
    if (op == COW_WRITE)
      buf += n;
    offset = rend;
  }
  ret = 0;
 out:
  rangelock_release (&clusters, c0, c1);
  return ret;
}

int
cow_read_copying (nbdkit_next *next, char *buf, uint64_t count,
                  uint64_t offset, int *err)
{
  uint64_t end = offset + count;
  uint64_t ca = offset >> cow.cbits, cb = ((end - 1) >> cow.cbits) + 1, cc;
  int r = 0;

  if (rangelock_acquire (&clusters, ca, cb) == -1) {
    *err = errno;
    return -1;
  }
  for (cc = ca; cc < cb && r == 0; ++cc) {
    uint64_t cstart = cc * cow.csize;
    uint64_t clen = MIN (cow.csize, cow.disk_size - cstart);
    uint64_t s = MAX (cstart, offset), e = MIN (cstart + clen, end);
    CLEANUP_FREE char *cbuf = NULL;

    if (addcow_store_range_set (&cow.store, cc, cc + 1)) {
      r = next->pread (next, buf + (s - offset), e - s, s, 0, err);
      continue;
    }
    cbuf = malloc (clen);
    if (cbuf == NULL) {
      *err = errno;
      r = -1;
      break;
    }
    r = cow_backing_read (cbuf, clen, cstart, err);
    if (r == 0)
      r = cow_image_write (next, cbuf, clen, cstart, 0,
                           bits_need_durable_data (), err);
    if (r == 0)
      r = set_bits (cc, cc + 1, err);
    if (r == 0)
      memcpy (buf + (s - offset), cbuf + (s - cstart), e - s);
  }
  rangelock_release (&clusters, ca, cb);
  return r;
}
