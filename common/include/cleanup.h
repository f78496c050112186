/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Scope-bound cleanup, as in nbdkit: a variable declared CLEANUP_FREE
 * is freed when it goes out of scope; ACQUIRE_LOCK_FOR_CURRENT_SCOPE
 * holds a mutex until the end of the enclosing block.
 */

#ifndef QAD_CLEANUP_H
#define QAD_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static inline void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))

static inline void
cleanup_close (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

static inline void
cleanup_mutex_unlock (pthread_mutex_t **ptr)
{
  pthread_mutex_unlock (*ptr);
}
#define QAD_UNIQUE_(a, b) a##b
#define QAD_UNIQUE(a, b) QAD_UNIQUE_ (a, b)
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                          \
  __attribute__ ((cleanup (cleanup_mutex_unlock)))                     \
  pthread_mutex_t *QAD_UNIQUE (_lock, __LINE__) = (mutex);             \
  pthread_mutex_lock (QAD_UNIQUE (_lock, __LINE__))

#endif /* QAD_CLEANUP_H */
