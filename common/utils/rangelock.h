/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A lock on ranges of clusters.  rangelock_acquire blocks until no
 * other holder's range overlaps [START, END), then records the range;
 * rangelock_release removes it and wakes the waiters.  Used to
 * serialise the changes to a cluster's mapping: copy-up, zeroing and
 * copy-on-read of bit-0 clusters in add-cow (addcow.c), allocation and
 * zero clusters in QED (qed-write.c).  Clusters that are already
 * mapped are written without it.
 */

#ifndef QAD_RANGELOCK_H
#define QAD_RANGELOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vector.h"

struct lock_range {
  uint64_t start, end;
};
DEFINE_VECTOR_TYPE (lock_range_vector, struct lock_range);

struct rangelock {
  pthread_mutex_t lock;         /* protects ranges */
  pthread_cond_t cond;          /* signalled on every release */
  lock_range_vector ranges;     /* held ranges, unordered */
};

#define RANGELOCK_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, \
                         empty_vector }

/* Returns 0, or -1 with errno = ENOMEM. */
extern int rangelock_acquire (struct rangelock *rl, uint64_t start,
                              uint64_t end);
extern void rangelock_release (struct rangelock *rl, uint64_t start,
                               uint64_t end);
/* For a rangelock inside a heap object (RANGELOCK_INIT for statics). */
extern void rangelock_init (struct rangelock *rl);
extern void rangelock_free (struct rangelock *rl);

#endif /* QAD_RANGELOCK_H */
