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

  for (i = 0; i < rl->nr; ++i)
    if (start < rl->ranges[i].end && rl->ranges[i].start < end)
      return true;
  return false;
}

void
rangelock_init (struct rangelock *rl)
{
  pthread_mutex_init (&rl->lock, NULL);
  pthread_cond_init (&rl->cond, NULL);
  rl->ranges = NULL;
  rl->nr = rl->alloc = 0;
}

int
rangelock_acquire (struct rangelock *rl, uint64_t start, uint64_t end)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);

  while (overlaps (rl, start, end))
    pthread_cond_wait (&rl->cond, &rl->lock);
  if (rl->nr == rl->alloc) {
    size_t n = rl->alloc ? rl->alloc * 2 : 16;
    struct lock_range *r = realloc (rl->ranges, n * sizeof *r);
    if (r == NULL) {
      errno = ENOMEM;
      return -1;
    }
    rl->ranges = r;
    rl->alloc = n;
  }
  rl->ranges[rl->nr].start = start;
  rl->ranges[rl->nr].end = end;
  rl->nr++;
  return 0;
}

void
rangelock_release (struct rangelock *rl, uint64_t start, uint64_t end)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);
  size_t i;

  for (i = 0; i < rl->nr; ++i) {
    if (rl->ranges[i].start == start && rl->ranges[i].end == end) {
      rl->ranges[i] = rl->ranges[rl->nr - 1];
      rl->nr--;
      break;
    }
  }
  pthread_cond_broadcast (&rl->cond);
}

void
rangelock_free (struct rangelock *rl)
{
  free (rl->ranges);
  rl->ranges = NULL;
  rl->nr = rl->alloc = 0;
}
