/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The held ranges are few (at most one per request in flight), so a
 * linear scan is fine.  Waiters re-check after every release.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cleanup.h"
#include "rangelock.h"

static bool
overlaps (const struct rangelock *rl, uint64_t start, uint64_t end)
{
  size_t i;

  for (i = 0; i < rl->ranges.len; ++i)
    if (start < rl->ranges.ptr[i].end && rl->ranges.ptr[i].start < end)
      return true;
  return false;
}

void
rangelock_init (struct rangelock *rl)
{
  pthread_mutex_init (&rl->lock, NULL);
  pthread_cond_init (&rl->cond, NULL);
  rl->ranges = (lock_range_vector) empty_vector;
}

int
rangelock_acquire (struct rangelock *rl, uint64_t start, uint64_t end)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);

  while (overlaps (rl, start, end))
    pthread_cond_wait (&rl->cond, &rl->lock);
  return lock_range_vector_append (&rl->ranges,
                                   (struct lock_range) { start, end });
}

void
rangelock_release (struct rangelock *rl, uint64_t start, uint64_t end)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);
  size_t i;

  for (i = 0; i < rl->ranges.len; ++i) {
    if (rl->ranges.ptr[i].start == start && rl->ranges.ptr[i].end == end) {
      /* Unordered: the last range fills the hole. */
      rl->ranges.ptr[i] = rl->ranges.ptr[--rl->ranges.len];
      break;
    }
  }
  pthread_cond_broadcast (&rl->cond);
}

void
rangelock_free (struct rangelock *rl)
{
  lock_range_vector_reset (&rl->ranges);
}
