/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The add-cow filter's data path below NBD semantics: reads from the
 * backing file, writes to the image, copy-up and copy-on-read of
 * clusters whose bits are 0.  The bitmap and its persistence belong to
 * the store (common/addcow/addcow-store.h).
 */

#ifndef ADDCOW_COPY_UP_H
#define ADDCOW_COPY_UP_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "addcow-store.h"
#include "blockdev.h"

/* What the data path shares: set up by .get_ready and the first
 * .prepare, read-only afterwards (the store has its own locks).
 */
struct cow {
  struct addcow_store store;
  struct qad_blockdev *backing;         /* NULL: reads as zeroes */
  uint32_t cbits;
  uint64_t csize;
  uint64_t disk_size;
};
extern struct cow cow;

enum cow_op { COW_WRITE, COW_ZERO };

/* The end of the run of clusters with equal bits that starts at
 * OFFSET, at most END; *V is their bit.
 */
static inline uint64_t
cow_run_end (uint64_t offset, uint64_t end, bool *v)
{
  uint64_t c = offset >> cow.cbits;
  uint64_t c1 = ((end - 1) >> cow.cbits) + 1;
  uint64_t run = addcow_store_run (&cow.store, c, c1, v);
  uint64_t rend = (c + run) * cow.csize;

  return rend < end ? rend : end;
}

/* Read from the backing file (zeroes past its end or without one). */
extern int cow_backing_read (void *buf, uint64_t count, uint64_t offset,
                             int *err);

/* Write BUF, or zeroes if BUF is NULL (ZFLAGS: MAY_TRIM, FAST_ZERO), to
 * the image.  With FUA the data is durable on success; a failed FUA
 * request poisons the store.
 */
extern int cow_image_write (nbdkit_next *next, const void *buf,
                            uint64_t count, uint64_t offset, uint32_t zflags,
                            bool fua, int *err);

/* A write or zero touching bit-0 clusters: partial clusters are copied
 * up, whole ones written, and their bits set.  FLAGS never has FUA.
 */
extern int cow_write_slow (nbdkit_next *next, enum cow_op op, const char *buf,
                           uint32_t count, uint64_t offset, uint32_t flags,
                           int *err);

/* Copy-on-read of [OFFSET, OFFSET+COUNT), a run of bit-0 clusters:
 * copy each cluster still at 0 into the image, set its bit, and fill
 * BUF.
 */
extern int cow_read_copying (nbdkit_next *next, char *buf, uint64_t count,
                             uint64_t offset, int *err);

extern void cow_free (void);

#endif /* ADDCOW_COPY_UP_H */
