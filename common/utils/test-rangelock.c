/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the range lock: overlapping ranges exclude each other,
 * touching and disjoint ones do not, a release wakes the waiter, the
 * table grows past its first allocation, and eight threads taking
 * random overlapping ranges never hold two overlapping ranges at once
 * (each thread marks the bytes it holds and checks nobody else does).
 * Also the C-level concurrency test that check.sh runs under TSan.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rangelock.h"

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

/* ---- a waiter blocks until the overlapping holder releases ---- */

static struct rangelock wl = RANGELOCK_INIT;
static pthread_mutex_t flag_lock = PTHREAD_MUTEX_INITIALIZER;
static bool acquired;

static void *
waiter (void *arg)
{
  assert (rangelock_acquire (&wl, 5, 15) == 0);
  pthread_mutex_lock (&flag_lock);
  acquired = true;
  pthread_mutex_unlock (&flag_lock);
  rangelock_release (&wl, 5, 15);
  return NULL;
}

static bool
get_acquired (void)
{
  bool r;
  pthread_mutex_lock (&flag_lock);
  r = acquired;
  pthread_mutex_unlock (&flag_lock);
  return r;
}

static void
test_wait_and_wake (void)
{
  pthread_t t;
  unsigned i;

  assert (rangelock_acquire (&wl, 0, 10) == 0);
  assert (pthread_create (&t, NULL, waiter, NULL) == 0);
  sleep_ms (100);
  assert (!get_acquired ());            /* [5,15) overlaps [0,10) */
  rangelock_release (&wl, 0, 10);
  for (i = 0; i < 1000 && !get_acquired (); ++i)
    sleep_ms (10);
  assert (get_acquired ());
  assert (pthread_join (t, NULL) == 0);
  assert (wl.ranges.len == 0);
  rangelock_free (&wl);
}

/* ---- no blocking between ranges that do not overlap ---- */

static void
test_disjoint (void)
{
  struct rangelock rl;
  uint64_t i;

  rangelock_init (&rl);
  /* Touching ranges ([0,10) and [10,20)) do not overlap: one thread
   * can hold both (it would deadlock otherwise).
   */
  assert (rangelock_acquire (&rl, 0, 10) == 0);
  assert (rangelock_acquire (&rl, 10, 20) == 0);
  assert (rangelock_acquire (&rl, UINT64_MAX - 1, UINT64_MAX) == 0);
  assert (rl.ranges.len == 3);
  rangelock_release (&rl, 0, 10);
  assert (rl.ranges.len == 2);
  /* Releasing a range that is not held changes nothing. */
  rangelock_release (&rl, 0, 10);
  rangelock_release (&rl, 10, 19);
  assert (rl.ranges.len == 2);
  rangelock_release (&rl, 10, 20);
  rangelock_release (&rl, UINT64_MAX - 1, UINT64_MAX);
  assert (rl.ranges.len == 0);

  /* More ranges than the first allocation holds. */
  for (i = 0; i < 100; ++i)
    assert (rangelock_acquire (&rl, i * 4096, i * 4096 + 4096) == 0);
  assert (rl.ranges.len == 100 && rl.ranges.cap >= 100);
  for (i = 0; i < 100; i += 2)
    rangelock_release (&rl, i * 4096, i * 4096 + 4096);
  assert (rl.ranges.len == 50);
  /* The odd ones are still held: the even ones are free again. */
  for (i = 0; i < 100; i += 2)
    assert (rangelock_acquire (&rl, i * 4096 + 1, i * 4096 + 4095) == 0);
  assert (rl.ranges.len == 100);
  rangelock_free (&rl);
  assert (rl.ranges.len == 0 && rl.ranges.ptr == NULL);
}

/* ---- threads: mutual exclusion of overlapping ranges ---- */

#define NTHREADS 8
#define ROUNDS 2000
#define SPACE 256

static struct rangelock sl = RANGELOCK_INIT;
/* owner[i]: the thread (1-based) that holds byte i, 0 if none.  Only
 * ever written by the thread holding a range over i: the range lock is
 * what makes this race-free (TSan would see it otherwise).
 */
static int owner[SPACE];
static unsigned overlaps_seen;          /* under flag_lock */

static void *
stress (void *arg)
{
  int me = (int) (intptr_t) arg;
  unsigned seed = me * 7919u;
  unsigned r, i;

  for (r = 0; r < ROUNDS; ++r) {
    uint64_t start, len;
    seed = seed * 1103515245 + 12345;
    start = (seed >> 8) % SPACE;
    seed = seed * 1103515245 + 12345;
    len = 1 + (seed >> 8) % 32;
    if (start + len > SPACE)
      len = SPACE - start;

    assert (rangelock_acquire (&sl, start, start + len) == 0);
    for (i = start; i < start + len; ++i) {
      if (owner[i] != 0) {
        pthread_mutex_lock (&flag_lock);
        overlaps_seen++;
        pthread_mutex_unlock (&flag_lock);
      }
      owner[i] = me;
    }
    sched_yield ();
    for (i = start; i < start + len; ++i) {
      if (owner[i] != me) {
        pthread_mutex_lock (&flag_lock);
        overlaps_seen++;
        pthread_mutex_unlock (&flag_lock);
      }
      owner[i] = 0;
    }
    rangelock_release (&sl, start, start + len);
  }
  return NULL;
}

static void
test_threads (void)
{
  pthread_t t[NTHREADS];
  int i;

  for (i = 0; i < NTHREADS; ++i)
    assert (pthread_create (&t[i], NULL, stress,
                            (void *) (intptr_t) (i + 1)) == 0);
  for (i = 0; i < NTHREADS; ++i)
    assert (pthread_join (t[i], NULL) == 0);
  if (overlaps_seen != 0) {
    fprintf (stderr, "FAIL: %u times two threads held the same byte\n",
             overlaps_seen);
    exit (EXIT_FAILURE);
  }
  assert (sl.ranges.len == 0);
  for (i = 0; i < SPACE; ++i)
    assert (owner[i] == 0);
  rangelock_free (&sl);
}

int
main (void)
{
  test_disjoint ();
  test_wait_and_wake ();
  test_threads ();
  return EXIT_SUCCESS;
}
