/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the I/O-error rules of common/qed (qed-write.c, "I/O
 * errors"): after a failed fdatasync the image refuses every later
 * write, zero, trim and flush with EIO, starts no new fdatasync, and
 * still reads; a reopen clears it.  ENOSPC from a pwrite fails only
 * that request: the image stays valid (at most leaks) and writes work
 * again once space is back.
 *
 * Notes on the design: common/qed calls fdatasync, pwrite and
 * fallocate directly.  This program defines them; being in the executable, its definitions
 * take precedence over libc's for the code of libqed.la and
 * libutils.la linked into it, so failures can be injected with no hook
 * in the library.  The real calls go through syscall(2).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"

#define SIZE (1024 * 1024)
#define CS 4096

/* Injection state: the next fail_syncs fdatasyncs fail with sync_err,
 * the next fail_writes pwrites with ENOSPC, the next fail_fallocs
 * fallocates with EIO (single-threaded parts only).  For the threaded
 * part: the fdatasync numbered fail_sync_nth (counting every call in
 * sync_calls) fails with EIO.
 */
static int fail_syncs, sync_err = EIO, fail_writes, fail_fallocs;
static unsigned long sync_calls, fail_sync_nth;  /* atomic */
static unsigned nr_syncs;       /* atomic: fdatasyncs that reached the
                                   kernel */

int
fdatasync (int fd)
{
  unsigned long n = __atomic_add_fetch (&sync_calls, 1, __ATOMIC_SEQ_CST);

  if (fail_syncs > 0) {
    fail_syncs--;
    errno = sync_err;
    return -1;
  }
  if (n == __atomic_load_n (&fail_sync_nth, __ATOMIC_SEQ_CST)) {
    errno = EIO;
    return -1;
  }
  __atomic_add_fetch (&nr_syncs, 1, __ATOMIC_SEQ_CST);
  return syscall (SYS_fdatasync, fd);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  if (fail_writes > 0) {
    fail_writes--;
    errno = ENOSPC;
    return -1;
  }
  return syscall (SYS_pwrite64, fd, buf, count, offset);
}

int
fallocate (int fd, int mode, off_t offset, off_t len)
{
  if (fail_fallocs > 0) {
    fail_fallocs--;
    errno = EIO;
    return -1;
  }
  return syscall (SYS_fallocate, fd, mode, offset, len);
}

static char dir[] = "/tmp/test-qed-poison.XXXXXX";
static unsigned errors_logged;

static void
count_errors (const char *msg)
{
  errors_logged++;
  fprintf (stderr, "(expected) %s\n", msg);
}

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #cond); \
      exit (EXIT_FAILURE);                                              \
    }                                                                   \
  } while (0)

/* CALL must fail with errno ERR. */
#define FAILS_WITH(err, call)                                           \
  do {                                                                  \
    errno = 0;                                                          \
    CHECK ((call) == -1);                                               \
    if (errno != (err)) {                                               \
      fprintf (stderr, "%s:%d: FAIL: %s: errno %d (%s), expected %s\n", \
               __FILE__, __LINE__, #call, errno, strerror (errno), #err); \
      exit (EXIT_FAILURE);                                              \
    }                                                                   \
  } while (0)

static char *
path_of (const char *name)
{
  static char buf[256];
  snprintf (buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static struct qed_image *
create_and_open (const char *name, bool backing)
{
  struct qed_create_options co = { .size = SIZE, .cluster_size = CS,
                                   .table_size = 1 };
  struct qed_open_options o = { .readonly = false };
  struct qed_image *img;

  if (backing) {
    co.backing = "base.raw";
    co.backing_format = "raw";
  }
  CHECK (qed_create (path_of (name), &co) == 0);
  img = qed_open (path_of (name), &o);
  CHECK (img != NULL);
  return img;
}

static struct qed_image *
reopen (const char *name)
{
  struct qed_open_options o = { .readonly = false };
  struct qed_image *img = qed_open (path_of (name), &o);
  CHECK (img != NULL);
  return img;
}

/* Every write-side entry point is refused with EIO, without an
 * fdatasync; reads still work and return BYTE at offset 0.
 */
static void
expect_poisoned (struct qed_image *img, unsigned char byte)
{
  unsigned char buf[CS];
  unsigned syncs = nr_syncs, logged = errors_logged;

  CHECK (qed_poisoned (img));
  memset (buf, 0x77, sizeof buf);
  FAILS_WITH (EIO, qed_flush (img));
  FAILS_WITH (EIO, qed_flush (img));
  FAILS_WITH (EIO, qed_pwrite (img, buf, sizeof buf, 0, false));
  FAILS_WITH (EIO, qed_pwrite (img, buf, sizeof buf, 8 * CS, true));
  FAILS_WITH (EIO, qed_zero (img, CS, 0, false, false, false));
  FAILS_WITH (EIO, qed_trim (img, CS, 0, false));
  CHECK (nr_syncs == syncs);            /* no new fdatasync started */
  CHECK (errors_logged == logged);      /* logged once, when it failed */
  CHECK (qed_pread (img, buf, sizeof buf, 0) == 0);
  CHECK (buf[0] == byte && buf[CS - 1] == byte);
}

/* The threaded part: writers doing FUA writes (so group commits) in
 * place while one fdatasync fails.  Once any writer has seen the
 * failure, no request that starts later may succeed (before the
 * poison, a later group commit started a new fdatasync that did).
 */
#define THREADS 4
#define OPS 150

static int failure_seen;        /* atomic */

struct writer {
  struct qed_image *img;
  unsigned id;
  unsigned ok_after_failure;    /* must stay 0 */
  unsigned failures;
  unsigned wrong_errno;
};

static void *
writer_thread (void *vp)
{
  struct writer *w = vp;
  unsigned char buf[512];
  unsigned i;

  memset (buf, 0x60 + w->id, sizeof buf);
  for (i = 0; i < OPS; ++i) {
    uint64_t off = (uint64_t) (w->id * 16 + i % 16) * CS;
    bool after = __atomic_load_n (&failure_seen, __ATOMIC_SEQ_CST);
    int r = qed_pwrite (w->img, buf, sizeof buf, off, true);
    if (r == 0 && after)
      w->ok_after_failure++;
    else if (r == -1) {
      __atomic_store_n (&failure_seen, 1, __ATOMIC_SEQ_CST);
      w->failures++;
      if (errno != EIO)
        w->wrong_errno++;
    }
  }
  return NULL;
}

static void
threaded_group_commit (void)
{
  struct qed_image *img = create_and_open ("e.qed", false);
  unsigned char *all = calloc (THREADS * 16, CS);
  struct writer w[THREADS];
  pthread_t th[THREADS];
  unsigned t, syncs;

  CHECK (all != NULL);
  /* Allocate every cluster first: the FUA writes go in place. */
  CHECK (qed_pwrite (img, all, THREADS * 16 * CS, 0, false) == 0);
  CHECK (qed_flush (img) == 0);
  __atomic_store_n (&fail_sync_nth,
                    __atomic_load_n (&sync_calls, __ATOMIC_SEQ_CST) + 40,
                    __ATOMIC_SEQ_CST);
  for (t = 0; t < THREADS; ++t) {
    w[t] = (struct writer) { .img = img, .id = t };
    CHECK (pthread_create (&th[t], NULL, writer_thread, &w[t]) == 0);
  }
  for (t = 0; t < THREADS; ++t) {
    CHECK (pthread_join (th[t], NULL) == 0);
    CHECK (w[t].ok_after_failure == 0);
    CHECK (w[t].failures > 0);
    CHECK (w[t].wrong_errno == 0);
  }
  syncs = __atomic_load_n (&nr_syncs, __ATOMIC_SEQ_CST);
  FAILS_WITH (EIO, qed_flush (img));
  CHECK (nr_syncs == syncs);
  CHECK (qed_poisoned (img));
  __atomic_store_n (&fail_sync_nth, 0, __ATOMIC_SEQ_CST);
  qed_close (img);
  free (all);
}

static void
check_valid (const char *name)
{
  struct qed_open_options o = { .readonly = true };
  struct qed_image *img = qed_open (path_of (name), &o);
  struct qed_check_result res;

  CHECK (img != NULL);
  CHECK (qed_check (img, false, &res, NULL, NULL) == 0);
  CHECK (res.corruptions == 0);
  qed_close (img);
}

int
main (void)
{
  unsigned char buf[CS];
  struct qed_image *img;
  unsigned logged;
  int fd;

  CHECK (mkdtemp (dir) != NULL);
  qad_set_error_handler (count_errors);

  /* 1. A flush whose fdatasync fails; the retry must not succeed. */
  img = create_and_open ("a.qed", false);
  memset (buf, 0x11, sizeof buf);
  CHECK (qed_pwrite (img, buf, sizeof buf, 0, false) == 0);
  CHECK (qed_flush (img) == 0);
  memset (buf, 0x22, sizeof buf);
  CHECK (qed_pwrite (img, buf, sizeof buf, 0, false) == 0);  /* in place */
  fail_syncs = 1;
  logged = errors_logged;
  FAILS_WITH (EIO, qed_flush (img));
  CHECK (errors_logged == logged + 1);  /* one line */
  expect_poisoned (img, 0x22);
  FAILS_WITH (EIO, qed_close (img));    /* the final flush is refused */
  /* A reopen starts afresh. */
  img = reopen ("a.qed");
  CHECK (!qed_poisoned (img));
  CHECK (qed_pwrite (img, buf, sizeof buf, CS, true) == 0);
  CHECK (qed_flush (img) == 0);
  CHECK (qed_close (img) == 0);

  /* 2. ENOSPC from fdatasync is poison too (it came from a sync). */
  img = create_and_open ("b.qed", false);
  memset (buf, 0x33, sizeof buf);
  CHECK (qed_pwrite (img, buf, sizeof buf, 0, false) == 0);
  fail_syncs = 1;
  sync_err = ENOSPC;
  FAILS_WITH (EIO, qed_pwrite (img, buf, sizeof buf, 0, true));  /* FUA */
  sync_err = EIO;
  expect_poisoned (img, 0x33);
  qed_close (img);

  /* 3. Over a backing file: the sync that orders new data before its
   * L2 entry fails.  The write fails and the entry is not written.
   */
  fd = open (path_of ("base.raw"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK (fd >= 0);
  memset (buf, 0xbb, sizeof buf);
  CHECK (full_pwrite (fd, buf, sizeof buf, 0) == 0);
  close (fd);
  img = create_and_open ("c.qed", true);
  memset (buf, 0x44, sizeof buf);
  CHECK (qed_pwrite (img, buf, 512, 8 * CS, false) == 0);  /* L2 table */
  fail_syncs = 1;
  FAILS_WITH (EIO, qed_pwrite (img, buf, 512, 0, false));
  expect_poisoned (img, 0xbb);
  qed_close (img);
  check_valid ("c.qed");

  /* 4. ENOSPC from pwrite while allocating: only that request fails. */
  img = create_and_open ("d.qed", false);
  memset (buf, 0x55, sizeof buf);
  CHECK (qed_pwrite (img, buf, sizeof buf, 0, false) == 0);
  fail_writes = 1;
  FAILS_WITH (ENOSPC, qed_pwrite (img, buf, sizeof buf, 16 * CS, false));
  CHECK (!qed_poisoned (img));
  CHECK (qed_pread (img, buf, sizeof buf, 0) == 0 && buf[0] == 0x55);
  /* Space is back: writes and flushes work. */
  CHECK (qed_pwrite (img, buf, sizeof buf, 16 * CS, true) == 0);
  CHECK (qed_flush (img) == 0);
  CHECK (qed_close (img) == 0);
  check_valid ("d.qed");

  /* 5. EIO from fallocate is not "unsupported": the trim fails rather
   * than silently writing zeroes in its place, and does not poison.
   */
  img = reopen ("d.qed");
  fail_fallocs = 1;
  FAILS_WITH (EIO, qed_trim (img, CS, 0, false));
  CHECK (!qed_poisoned (img));
  CHECK (qed_pread (img, buf, sizeof buf, 0) == 0 && buf[0] == 0x55);
  CHECK (qed_trim (img, CS, 0, false) == 0);
  CHECK (qed_pread (img, buf, sizeof buf, 0) == 0 && buf[0] == 0);
  CHECK (qed_close (img) == 0);

  /* 6. Concurrent group commits. */
  threaded_group_commit ();

  fprintf (stderr, "test-qed-poison: OK (%u errors logged as expected)\n",
           errors_logged);
  unlink (path_of ("a.qed"));
  unlink (path_of ("b.qed"));
  unlink (path_of ("c.qed"));
  unlink (path_of ("d.qed"));
  unlink (path_of ("e.qed"));
  unlink (path_of ("base.raw"));
  rmdir (dir);
  return EXIT_SUCCESS;
}
