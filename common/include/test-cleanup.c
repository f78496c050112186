/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include "cleanup.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void
locked_scope (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&lock);
  assert (pthread_mutex_trylock (&lock) == EBUSY);
}

int
main (void)
{
  {
    CLEANUP_FREE char *p = malloc (100);
    assert (p != NULL);
  }
  locked_scope ();
  /* The scope released the lock. */
  assert (pthread_mutex_trylock (&lock) == 0);
  pthread_mutex_unlock (&lock);
  return 0;
}
