/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the add-cow bitmap store: one case per ordering rule,
 * over a fake add-cow file in memory that logs every write and sync and
 * fails the ones it is told to, and a fake image flush.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addcow.h"
#include "addcow-store.h"
#include "byte-swapping.h"

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "%s:%d: check failed: %s\n",                     \
               __FILE__, __LINE__, #cond);                              \
      exit (EXIT_FAILURE);                                              \
    }                                                                   \
  } while (0)

#define HEADER 4096
#define NCLUSTERS 64                    /* 8 bitmap bytes */
#define BMLEN 4096

/* The fake add-cow file and the event log. */
static uint8_t file[HEADER + BMLEN];
static char events[64][16];
static int nr_events;
static int fail_pwrite, fail_sync;      /* fail the next one */
static int fail_image_flush;
static struct addcow_store st;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void
event (const char *e)
{
  pthread_mutex_lock (&log_lock);
  if (nr_events < 64)
    snprintf (events[nr_events++], sizeof events[0], "%s", e);
  pthread_mutex_unlock (&log_lock);
}

static int
fake_pwrite (void *opaque, const void *buf, size_t count, uint64_t offset)
{
  CHECK (offset + count <= sizeof file);
  if (fail_pwrite) {
    fail_pwrite = 0;
    event ("pwrite-fail");
    errno = ENOSPC;
    return -1;
  }
  memcpy (file + offset, buf, count);
  event (offset == ADDCOW_OFF_COMPAT_FEATURES ? "header" : "bitmap");
  return 0;
}

static int
fake_sync (void *opaque)
{
  if (fail_sync) {
    fail_sync = 0;
    event ("sync-fail");
    errno = EIO;
    return -1;
  }
  event ("sync");
  return 0;
}

/* The image flush; optionally sets cluster *OPAQUE while it runs, as a
 * concurrent copy-up finishing during the flush would.
 */
static int
fake_image_flush (void *opaque)
{
  if (opaque)
    CHECK (addcow_store_set (&st, *(uint64_t *) opaque,
                             *(uint64_t *) opaque + 1) == 0);
  if (fail_image_flush) {
    fail_image_flush = 0;
    event ("image-fail");
    errno = EIO;
    return -1;
  }
  event ("image");
  return 0;
}

static void
start (enum addcow_persist_mode mode)
{
  struct addcow_store_io io = { fake_pwrite, fake_sync, NULL };
  uint8_t *bm = calloc (BMLEN, 1);

  CHECK (bm != NULL);
  memset (file, 0, sizeof file);
  nr_events = 0;
  fail_pwrite = fail_sync = fail_image_flush = 0;
  CHECK (addcow_store_init (&st, "test.add-cow", &io, mode, HEADER, 0,
                            bm, BMLEN, NCLUSTERS) == 0);
}

static bool
file_bit (uint64_t c)
{
  return bit_test (file + HEADER, c);
}

static void
expect_events (const char *const *want)
{
  int i;

  for (i = 0; want[i]; ++i) {
    if (i >= nr_events || strcmp (events[i], want[i]) != 0) {
      fprintf (stderr, "event %d: want %s, got %s\n", i, want[i],
               i < nr_events ? events[i] : "(none)");
      exit (EXIT_FAILURE);
    }
  }
  CHECK (i == nr_events);
  nr_events = 0;
}

#define EXPECT(...) expect_events ((const char *const []) { __VA_ARGS__, NULL })

/* AT_FLUSH: a bit reaches the file only after the image flush. */
static void
test_flush_order (void)
{
  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 3, 4) == 0);
  CHECK (addcow_store_range_set (&st, 3, 4));
  CHECK (!file_bit (3));
  CHECK (!addcow_store_range_durable (&st, 3, 4));
  CHECK (addcow_store_have_dirty (&st));
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image", "bitmap", "sync");
  CHECK (file_bit (3));
  CHECK (addcow_store_range_durable (&st, 3, 4));
  CHECK (!addcow_store_have_dirty (&st));
  /* Nothing dirty: a flush only flushes the image. */
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image");
  addcow_store_free (&st);
}

/* A bit set while the image flush runs was not covered by it. */
static void
test_flush_snapshot (void)
{
  uint64_t late = 9;

  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 3, 4) == 0);
  CHECK (addcow_store_flush (&st, fake_image_flush, &late) == 0);
  CHECK (file_bit (3));
  CHECK (!file_bit (late));
  CHECK (!addcow_store_range_durable (&st, late, late + 1));
  CHECK (addcow_store_have_dirty (&st));
  nr_events = 0;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image", "bitmap", "sync");
  CHECK (file_bit (late));
  addcow_store_free (&st);
}

/* ALL_ALLOCATED is written only after the bitmap is durable. */
static void
test_all_allocated_after_bitmap (void)
{
  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 0, NCLUSTERS) == 0);
  CHECK (addcow_store_all_set (&st));
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image", "bitmap", "sync", "header", "sync");
  CHECK (load_le64 (file + ADDCOW_OFF_COMPAT_FEATURES) ==
         ADDCOW_COMPAT_ALL_ALLOCATED);
  CHECK (!addcow_store_have_dirty (&st));
  addcow_store_free (&st);

  /* A failed bitmap sync: no header write at all. */
  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 0, NCLUSTERS) == 0);
  fail_sync = 1;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  EXPECT ("image", "bitmap", "sync-fail");
  CHECK (load_le64 (file + ADDCOW_OFF_COMPAT_FEATURES) == 0);
  addcow_store_free (&st);
}

/* A failed bitmap write re-dirties the chunk (no poison: nothing was
 * synced); the next flush writes it.
 */
static void
test_redirty_on_failed_write (void)
{
  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 5, 6) == 0);
  fail_pwrite = 1;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  CHECK (errno == ENOSPC);
  EXPECT ("image", "pwrite-fail");
  CHECK (!addcow_store_poisoned (&st));
  CHECK (!addcow_store_range_durable (&st, 5, 6));
  CHECK (addcow_store_have_dirty (&st));
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image", "bitmap", "sync");
  CHECK (file_bit (5));
  addcow_store_free (&st);
}

/* A failed sync of the file or of the image poisons the store. */
static void
test_poison (void)
{
  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 5, 6) == 0);
  fail_sync = 1;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  CHECK (addcow_store_poisoned (&st));
  CHECK (!addcow_store_range_durable (&st, 5, 6));
  nr_events = 0;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  CHECK (errno == EIO);
  EXPECT (NULL);                /* refused before any I/O */
  addcow_store_free (&st);

  start (ADDCOW_PERSIST_AT_FLUSH);
  CHECK (addcow_store_set (&st, 5, 6) == 0);
  fail_image_flush = 1;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  EXPECT ("image-fail");
  CHECK (!file_bit (5));
  CHECK (addcow_store_poisoned (&st));
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == -1);
  CHECK (errno == EIO);
  addcow_store_free (&st);

  start (ADDCOW_PERSIST_AT_WRITE);
  fail_sync = 1;
  CHECK (addcow_store_set (&st, 2, 3) == -1);
  CHECK (addcow_store_poisoned (&st));
  CHECK (!addcow_store_range_set (&st, 2, 3));
  CHECK (addcow_store_set (&st, 4, 5) == -1);
  CHECK (errno == EIO);
  addcow_store_free (&st);
}

/* The sync in AT_WRITE mode, checking that the bit being persisted is
 * not visible yet.
 */
static uint64_t watched;
static int
sync_while_watching (void *opaque)
{
  CHECK (!addcow_store_range_set (&st, watched, watched + 1));
  return fake_sync (opaque);
}

/* AT_WRITE: the bit is durable before anyone sees it as 1. */
static void
test_at_write (void)
{
  start (ADDCOW_PERSIST_AT_WRITE);
  st.io.sync = sync_while_watching;
  watched = 10;
  CHECK (addcow_store_set (&st, 10, 11) == 0);
  EXPECT ("bitmap", "sync");
  CHECK (file_bit (10));
  CHECK (addcow_store_range_set (&st, 10, 11));
  CHECK (addcow_store_range_durable (&st, 10, 11));
  /* A neighbour in the same byte keeps bit 10. */
  watched = 11;
  CHECK (addcow_store_set (&st, 11, 12) == 0);
  CHECK (file_bit (10) && file_bit (11));
  /* A failed write leaves the bit at 0, without poison. */
  fail_pwrite = 1;
  watched = 12;
  CHECK (addcow_store_set (&st, 12, 13) == -1);
  CHECK (!addcow_store_range_set (&st, 12, 13));
  CHECK (!addcow_store_poisoned (&st));
  /* A flush has nothing to write but flushes the image. */
  nr_events = 0;
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("image");
  /* The last bit brings ALL_ALLOCATED, after the bitmap. */
  watched = 0;
  st.io.sync = fake_sync;
  CHECK (addcow_store_set (&st, 0, NCLUSTERS) == 0);
  EXPECT ("bitmap", "sync", "header", "sync");
  CHECK (load_le64 (file + ADDCOW_OFF_COMPAT_FEATURES) ==
         ADDCOW_COMPAT_ALL_ALLOCATED);
  addcow_store_free (&st);
}

/* AT_CLOSE: the image cannot be flushed; nothing is durable until a
 * flush (at close) writes the bitmap.
 */
static void
test_at_close (void)
{
  start (ADDCOW_PERSIST_AT_CLOSE);
  CHECK (addcow_store_set (&st, 7, 8) == 0);
  CHECK (!addcow_store_range_durable (&st, 7, 8));
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  EXPECT ("bitmap", "sync");
  CHECK (file_bit (7));
  CHECK (!addcow_store_range_durable (&st, 7, 8));
  addcow_store_free (&st);
}

/* Threads setting neighbouring bits and flushing at once: at the end
 * every bit is in the file (AT_WRITE: each byte write must carry the
 * bits persisted before it).  Run under TSan too.
 */
static void *
setter (void *arg)
{
  uint64_t t = (uintptr_t) arg, c;

  for (c = t; c < NCLUSTERS; c += 4) {
    CHECK (addcow_store_set (&st, c, c + 1) == 0);
    if (c % 3 == 0)
      CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  }
  return NULL;
}

static void
test_threads (enum addcow_persist_mode mode)
{
  pthread_t th[4];
  uintptr_t t;
  uint64_t c;

  start (mode);
  for (t = 0; t < 4; ++t)
    CHECK (pthread_create (&th[t], NULL, setter, (void *) t) == 0);
  for (t = 0; t < 4; ++t)
    CHECK (pthread_join (th[t], NULL) == 0);
  CHECK (addcow_store_flush (&st, fake_image_flush, NULL) == 0);
  for (c = 0; c < NCLUSTERS; ++c)
    CHECK (file_bit (c));
  CHECK (load_le64 (file + ADDCOW_OFF_COMPAT_FEATURES) ==
         ADDCOW_COMPAT_ALL_ALLOCATED);
  addcow_store_free (&st);
}

int
main (void)
{
  test_flush_order ();
  test_flush_snapshot ();
  test_all_allocated_after_bitmap ();
  test_redirty_on_failed_write ();
  test_poison ();
  test_at_write ();
  test_at_close ();
  test_threads (ADDCOW_PERSIST_AT_FLUSH);
  test_threads (ADDCOW_PERSIST_AT_WRITE);
  printf ("test-addcow-store: ok\n");
  return 0;
}
