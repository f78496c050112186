/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the QDB tracker (qdb-tracker.h): one case per ordering
 * rule, over a fake QDB file in memory whose "durable" copy is what a
 * crash would leave: it is updated only by a successful sync.  The
 * fake counts syncs and fails the writes or syncs it is told to.  Each
 * case reads the durable copy back with qdb_read, as the filter would
 * after a crash, and checks what it must hold.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#undef NDEBUG
#include <assert.h>

#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-tracker.h"
#include "qdb.h"

#define GRAN 512                        /* bitmap granularity */
#define REGION (UINT64_C (1) << 20)     /* lazy mode's region size */
#define DISK (UINT64_C (32) << 20)
#define BLOCK_SPAN ((uint64_t) QDB_TRACKER_BLOCK * 8 * GRAN) /* 2 MiB */
#define THREADS 8

/* The fake file.  "mb" is what the page cache holds; "durable" what a
 * crash would leave (a copy of mb taken at each successful sync).
 */
static struct qdb_membuf mb;
static struct qdb_io mem_io;            /* pwrite into mb */
static uint8_t *durable;
static size_t durable_size;
static int syncs, fail_pwrite, fail_sync;
static struct qdb_tracker *sync_waits_for; /* group commit case */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;

static struct qdb_tracker t;
static struct qdb_io io;                /* what the tracker gets */

static int
fake_pwrite (void *opaque, const void *buf, size_t count, uint64_t offset)
{
  int r;

  pthread_mutex_lock (&fake_lock);
  if (fail_pwrite) {
    fail_pwrite = 0;
    errno = ENOSPC;
    r = -1;
  }
  else
    r = mem_io.pwrite (mem_io.opaque, buf, count, offset);
  pthread_mutex_unlock (&fake_lock);
  return r;
}

/* Group commit case: the first sync waits until every other thread has
 * queued its block, so that they all wait for the commit in flight.
 */
static void
wait_for_queue (struct qdb_tracker *tr, size_t want)
{
  int i;

  for (i = 0; i < 10000; ++i) {
    size_t len;

    pthread_mutex_lock (&tr->lock);
    len = tr->queue.len;
    pthread_mutex_unlock (&tr->lock);
    if (len >= want)
      return;
    usleep (1000);
  }
  fprintf (stderr, "timed out waiting for %zu queued blocks\n", want);
  exit (EXIT_FAILURE);
}

static int
fake_sync (void *opaque)
{
  struct qdb_tracker *w = __atomic_exchange_n (&sync_waits_for, NULL,
                                               __ATOMIC_ACQ_REL);

  if (w)
    wait_for_queue (w, THREADS - 1);
  pthread_mutex_lock (&fake_lock);
  if (fail_sync) {
    fail_sync = 0;
    pthread_mutex_unlock (&fake_lock);
    errno = EIO;
    return -1;
  }
  free (durable);
  durable = malloc (mb.size);
  assert (durable);
  memcpy (durable, mb.data, mb.size);
  durable_size = mb.size;
  syncs++;
  pthread_mutex_unlock (&fake_lock);
  return 0;
}

/* A new QDB file with one enabled bitmap "b", written as the filter
 * writes it (every table entry allocated), and a tracker on it.
 */
static void
start (bool lazy)
{
  struct qdb_file *qdb;

  free (mb.data);
  memset (&mb, 0, sizeof mb);
  qdb_io_init_mem (&mem_io, &mb, "test.qdb");
  qdb = qdb_new ("test.qdb", 9);
  assert (qdb);
  assert (qdb_add_bitmap (qdb, "b", GRAN, DISK, QDB_FLAG_ENABLED) == 0);
  qdb->region_size = lazy ? REGION : 0;
  assert (qdb_write (&mem_io, qdb, true) == 0);

  io = (struct qdb_io) {
    .opaque = NULL, .name = "test.qdb", .size = mb.size,
    .pread = NULL, .pwrite = fake_pwrite, .sync = fake_sync,
  };
  syncs = fail_pwrite = fail_sync = 0;
  assert (fake_sync (NULL) == 0);       /* the file as created */
  syncs = 0;
  assert (qdb_tracker_init (&t, "test.qdb", &io, lazy, 5) == 0);
  assert (qdb_tracker_set_model (&t, qdb, DISK) == 0);
}

static void
finish (void)
{
  qdb_tracker_free (&t);
}

/* What a crash now would leave, read back as the filter reads it. */
static struct qdb_file *
after_crash (void)
{
  static struct qdb_membuf copy;
  struct qdb_io cio;
  struct qdb_file *qdb;

  free (copy.data);
  copy.data = malloc (durable_size);
  assert (copy.data);
  memcpy (copy.data, durable, durable_size);
  copy.size = copy.alloc = durable_size;
  qdb_io_init_mem (&cio, &copy, "crashed.qdb");
  qdb = qdb_read (&cio, true);
  assert (qdb);
  return qdb;
}

static bool
durable_bit (uint64_t offset)
{
  struct qdb_file *qdb = after_crash ();
  bool r = bit_test (qdb_find_bitmap (qdb, "b")->bits, offset / GRAN);

  qdb_free (qdb);
  return r;
}

/* The fine bit of OFFSET in the durable copy itself, without the
 * region map's help.
 */
static bool
durable_raw_bit (uint64_t offset)
{
  const struct qdb_bitmap *bm = qdb_find_bitmap (t.qdb, "b");
  uint64_t g = offset / GRAN;
  uint64_t off = qdb_bits_file_offset (t.qdb, bm, g / 8);

  assert (off > 0 && off < durable_size);
  return durable[off] & (1u << (g & 7));
}

/* The region map bit of REGION R, in the durable copy (raw). */
static bool
durable_region_bit (uint64_t r)
{
  return bit_test (durable + t.qdb->region_map_offset, r);
}

static int
mark (uint64_t offset, uint32_t count)
{
  int err = 0;
  int r = qdb_tracker_mark (&t, offset, count, &err);

  if (r == -1)
    errno = err;
  return r;
}

/* Strict mode: when mark returns, the bit is durable (the request may
 * be passed down, and acknowledged); a second write there costs no sync.
 */
static void
test_strict_durable_before_write (void)
{
  start (false);
  assert (!durable_bit (5 * GRAN));
  assert (mark (5 * GRAN, 100) == 0);
  assert (durable_bit (5 * GRAN));
  assert (syncs == 1);
  assert (mark (5 * GRAN + 200, 100) == 0);
  assert (syncs == 1);
  /* A request over two granules, one new. */
  assert (mark (5 * GRAN + 300, GRAN) == 0);
  assert (durable_bit (6 * GRAN));
  assert (syncs == 2);
  finish ();
}

static void *
marker (void *arg)
{
  uintptr_t i = (uintptr_t) arg;

  assert (mark (i * BLOCK_SPAN, GRAN) == 0);
  return NULL;
}

/* Group commit: THREADS concurrent first writes into different blocks
 * of bitmap data share syncs: the first leader's sync is held until all
 * the others are queued, and the next leader commits them all at once.
 */
static void
test_group_commit (void)
{
  pthread_t th[THREADS];
  uintptr_t i;

  start (false);
  sync_waits_for = &t;
  for (i = 0; i < THREADS; ++i)
    assert (pthread_create (&th[i], NULL, marker, (void *) i) == 0);
  for (i = 0; i < THREADS; ++i)
    pthread_join (th[i], NULL);
  for (i = 0; i < THREADS; ++i)
    assert (durable_bit (i * BLOCK_SPAN));
  fprintf (stderr, "group commit: %d requests, %d syncs\n", THREADS, syncs);
  assert (syncs < THREADS);
  assert (syncs == 2);
  assert (t.stat_commits == 2);
  finish ();
}

/* Draining: a command runs only when no request is between
 * qdb_tracker_begin_change and qdb_tracker_end_io, and holds new ones
 * back; a request ending while a command waits wakes it (a lost wakeup
 * would hang here, and the alarm in main fails the test).
 */
#define DRAIN_ROUNDS 2000
static int active_requests;             /* atomic */
static int stop_requests;               /* atomic */

static void *
requester (void *arg)
{
  uintptr_t i = (uintptr_t) arg;
  unsigned n = 0;

  while (!__atomic_load_n (&stop_requests, __ATOMIC_SEQ_CST)) {
    int err = 0;
    uint64_t off = ((i * 7919 + n++ * 104729) % (DISK / GRAN)) * GRAN;

    assert (qdb_tracker_begin_change (&t, off, GRAN, &err) == 0);
    __atomic_add_fetch (&active_requests, 1, __ATOMIC_SEQ_CST);
    if (n % 4 == 0)
      sched_yield ();
    __atomic_sub_fetch (&active_requests, 1, __ATOMIC_SEQ_CST);
    qdb_tracker_end_io (&t);
  }
  return NULL;
}

static void
test_drain (bool lazy)
{
  pthread_t th[THREADS];
  uintptr_t i;
  int round;

  start (lazy);
  __atomic_store_n (&stop_requests, 0, __ATOMIC_SEQ_CST);
  for (i = 0; i < THREADS; ++i)
    assert (pthread_create (&th[i], NULL, requester, (void *) i) == 0);
  for (round = 0; round < DRAIN_ROUNDS; ++round) {
    qdb_tracker_begin_command (&t, true);
    assert (__atomic_load_n (&active_requests, __ATOMIC_SEQ_CST) == 0);
    assert (__atomic_load_n (&t.in_flight, __ATOMIC_SEQ_CST) == 0);
    if (round % 8 == 0)
      sched_yield ();
    assert (__atomic_load_n (&active_requests, __ATOMIC_SEQ_CST) == 0);
    qdb_tracker_end_command (&t);
  }
  __atomic_store_n (&stop_requests, 1, __ATOMIC_SEQ_CST);
  for (i = 0; i < THREADS; ++i)
    pthread_join (th[i], NULL);
  assert (t.in_flight == 0);
  finish ();
}

static void test_drain_strict (void) { test_drain (false); }
static void test_drain_lazy (void) { test_drain (true); }

static int flushes_below;

static int
flush_below_ok (void *opaque, int *err)
{
  flushes_below++;
  return 0;
}

static int
flush_below_fails (void *opaque, int *err)
{
  flushes_below++;
  *err = EIO;
  return -1;
}

/* A failed sync (or write) of the bitmap poisons: every later mark and
 * flush fails with EIO, even where the bits are already durable.
 */
static void
test_failed_sync_poisons (bool fail_the_write)
{
  int err = 0;

  start (false);
  assert (mark (0, GRAN) == 0);         /* durable before the failure */
  flushes_below = 0;
  assert (qdb_tracker_flush (&t, flush_below_ok, NULL, &err) == 0);
  assert (flushes_below == 1);

  if (fail_the_write)
    fail_pwrite = 1;
  else
    fail_sync = 1;
  assert (mark (8 * GRAN, GRAN) == -1);
  assert (qdb_tracker_poisoned (&t));
  assert (!durable_bit (8 * GRAN));

  assert (qdb_tracker_flush (&t, flush_below_ok, NULL, &err) == -1);
  assert (err == EIO);
  assert (flushes_below == 1);          /* not even tried */
  assert (mark (0, GRAN) == -1 && errno == EIO);
  assert (mark (8 * GRAN, GRAN) == -1 && errno == EIO);
  assert (qdb_tracker_refuse_if_poisoned (&t, &err) == -1 && err == EIO);
  finish ();
}

/* A failed flush below poisons too; so does a FUA request below that
 * failed with an error that may mean lost data, but not a refusal.
 */
static void
test_failure_below_poisons (void)
{
  int err = 0;

  start (false);
  assert (qdb_tracker_flush (&t, flush_below_fails, NULL, &err) == -1);
  assert (qdb_tracker_flush (&t, flush_below_ok, NULL, &err) == -1);
  assert (err == EIO);
  finish ();

  start (false);
  err = ENOSPC;
  assert (qdb_tracker_after_below (&t, "write", true, -1, &err) == -1);
  err = EIO;
  assert (qdb_tracker_after_below (&t, "write", false, -1, &err) == -1);
  assert (!qdb_tracker_poisoned (&t));
  assert (qdb_tracker_flush (&t, flush_below_ok, NULL, &err) == 0);
  err = EIO;
  assert (qdb_tracker_after_below (&t, "write", true, -1, &err) == -1);
  assert (qdb_tracker_flush (&t, flush_below_ok, NULL, &err) == -1);
  finish ();
}

/* Lazy mode: a region is durable in the region map before the first
 * write into it is passed down; the fine bits wait for a checkpoint;
 * a checkpoint clears idle regions, which the next write there commits
 * again before it is passed down.
 */
static void
test_lazy_region_first (void)
{
  const uint64_t off = 3 * REGION + 4096;

  start (true);
  assert (!durable_region_bit (3));
  assert (mark (off, GRAN) == 0);
  assert (durable_region_bit (3));
  assert (!durable_region_bit (2) && !durable_region_bit (4));
  assert (syncs == 1);
  assert (!durable_raw_bit (off));      /* fine bits are lazy */
  assert (mark (off + 8 * GRAN, GRAN) == 0);
  assert (syncs == 1);                  /* same region: no sync */

  qdb_tracker_checkpoint (&t);
  assert (durable_raw_bit (off) && durable_raw_bit (off + 8 * GRAN));
  assert (!durable_region_bit (3));     /* idle since the snapshot */
  assert (mark (off + 16 * GRAN, GRAN) == 0);
  assert (durable_region_bit (3));
  finish ();
}

/* Recovery after an unclean shutdown in lazy mode: every written
 * granule reads dirty, and so does every granule of a marked region
 * (a superset); unwritten regions stay clean.
 */
static void
test_lazy_recovery (void)
{
  static const uint64_t writes[] = {
    1 * REGION + 512, 1 * REGION + 65536, 5 * REGION + REGION - GRAN,
    9 * REGION,
  };
  struct qdb_file *qdb;
  const struct qdb_bitmap *bm;
  uint64_t g, i;

  start (true);
  for (i = 0; i < sizeof writes / sizeof writes[0]; ++i)
    assert (mark (writes[i], GRAN) == 0);
  qdb = after_crash ();                 /* no checkpoint: kill -9 now */
  bm = qdb_find_bitmap (qdb, "b");
  assert (qdb->region_recovered > 0);
  for (i = 0; i < sizeof writes / sizeof writes[0]; ++i)
    assert (bit_test (bm->bits, writes[i] / GRAN));
  for (g = 0; g < DISK / GRAN; ++g) {
    uint64_t r = g * GRAN / REGION;
    bool marked = r == 1 || r == 5 || r == 9;
    assert (bit_test (bm->bits, g) == marked);
  }
  qdb_free (qdb);

  /* After a checkpoint and more writes, into a new region and into
   * one the checkpoint cleared, the fine bits of before and the new
   * writes' regions are there.
   */
  qdb_tracker_checkpoint (&t);
  assert (mark (12 * REGION, GRAN) == 0);
  assert (mark (5 * REGION, GRAN) == 0);
  qdb = after_crash ();
  bm = qdb_find_bitmap (qdb, "b");
  for (i = 0; i < sizeof writes / sizeof writes[0]; ++i)
    assert (bit_test (bm->bits, writes[i] / GRAN));
  assert (bit_test (bm->bits, 12 * REGION / GRAN + 100));
  assert (bit_test (bm->bits, 5 * REGION / GRAN));
  assert (!bit_test (bm->bits, 1 * REGION / GRAN + 1000));
  qdb_free (qdb);
  finish ();
}

static void
quiet (const char *msg)
{
  if (getenv ("VERBOSE"))
    fprintf (stderr, "%s\n", msg);
}

static void test_sync_poisons (void) { test_failed_sync_poisons (false); }
static void test_write_poisons (void) { test_failed_sync_poisons (true); }

static const struct {
  const char *name;
  void (*fn) (void);
} tests[] = {
  { "strict", test_strict_durable_before_write },
  { "group-commit", test_group_commit },
  { "sync-poisons", test_sync_poisons },
  { "write-poisons", test_write_poisons },
  { "below-poisons", test_failure_below_poisons },
  { "lazy-region", test_lazy_region_first },
  { "lazy-recovery", test_lazy_recovery },
  { "drain-strict", test_drain_strict },
  { "drain-lazy", test_drain_lazy },
};

/* With an argument, runs only the case of that name. */
int
main (int argc, char *argv[])
{
  size_t i;

  qad_set_error_handler (quiet);
  alarm (300);                  /* a lost wakeup hangs: fail instead */
  for (i = 0; i < sizeof tests / sizeof tests[0]; ++i)
    if (argc < 2 || strcmp (argv[1], tests[i].name) == 0)
      tests[i].fn ();
  free (mb.data);
  free (durable);
  return 0;
}
