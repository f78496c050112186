/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The backing-file policy on a scratch tree:
 *
 *   T/img/top       the "top image"
 *   T/img/in.raw    inside
 *   T/img/fifo      a FIFO inside (must be refused, not hang)
 *   T/img/up        symlink -> ../out.raw (leaves)
 *   T/img/abs       symlink -> T/img/in.raw, absolute (stays inside)
 *   T/out.raw       outside
 *   T/extra/e.raw   inside backing-dir T/extra
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing-policy.h"
#include "qad-error.h"

static char t[64];

static char *
at (const char *rel)
{
  static char buf[4][256];
  static int i;
  char *b = buf[i++ % 4];
  snprintf (b, 256, "%s/%s", t, rel);
  return b;
}

static void
touch (const char *rel)
{
  int fd = open (at (rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert (fd >= 0 && write (fd, "data", 4) == 4);
  close (fd);
}

static void
quiet (const char *msg)
{
}

/* The swap race: a thread flips T/img/swap between a link to in.raw
 * and a link to ../out.raw (by rename, so the name always exists)
 * while the main thread opens it under "inside".  Every open that
 * succeeds must be of in.raw, whatever the timing.
 */
static bool stop;               /* atomic: set by main, read by swapper */
static char tmp_path[256], swap_path[256], top_path[256];

/* Uses only its own paths: at() is not thread-safe. */
static void *
swapper (void *arg)
{
  unsigned i;

  for (i = 0; !__atomic_load_n (&stop, __ATOMIC_ACQUIRE); ++i) {
    unlink (tmp_path);
    if (symlink (i % 2 ? "../out.raw" : "in.raw", tmp_path) == 0)
      rename (tmp_path, swap_path);
  }
  return NULL;
}

/* Open NAME (relative to T/img) under R: the fd, or -1 with errno. */
static int
try_open (const struct qad_backing_rules *r, const char *name)
{
  char path[256];
  snprintf (path, sizeof path, "%s/img/%s", t, name);
  return qad_backing_open (r, top_path, name, path);
}

static void
expect_ok (const struct qad_backing_rules *r, const char *name)
{
  int fd = try_open (r, name);
  if (fd == -1) {
    fprintf (stderr, "expected %s to open: %m\n", name);
    abort ();
  }
  close (fd);
}

static void
expect_refused (const struct qad_backing_rules *r, const char *name)
{
  int fd = try_open (r, name);
  if (fd != -1 || errno != EPERM) {
    fprintf (stderr, "expected %s to be refused (fd %d): %m\n", name, fd);
    abort ();
  }
}

int
main (void)
{
  struct qad_backing_rules follow, inside, with_dir, refuse;
  enum qad_backing_policy p;
  int fd;

  assert (qad_backing_policy_parse ("inside", &p) == 0 &&
          p == QAD_BACKING_INSIDE);
  assert (qad_backing_policy_parse ("Inside", &p) == -1 && errno == EINVAL);
  assert (strcmp (qad_backing_policy_name (QAD_BACKING_REFUSE),
                  "refuse") == 0);

  assert (qad_path_is_below ("/a/b", "/a"));
  assert (qad_path_is_below ("/a", "/a"));
  assert (qad_path_is_below ("/a/b", "/"));
  assert (!qad_path_is_below ("/ab", "/a"));
  assert (!qad_path_is_below ("/", "/a"));

  qad_set_error_handler (quiet);
  strcpy (t, "/tmp/test-backing-policy.XXXXXX");
  assert (mkdtemp (t) != NULL);
  assert (mkdir (at ("img"), 0755) == 0 && mkdir (at ("extra"), 0755) == 0);
  touch ("img/top");
  snprintf (top_path, sizeof top_path, "%s/img/top", t);
  snprintf (tmp_path, sizeof tmp_path, "%s/img/tmp", t);
  snprintf (swap_path, sizeof swap_path, "%s/img/swap", t);
  touch ("img/in.raw");
  touch ("out.raw");
  touch ("extra/e.raw");
  assert (mkfifo (at ("img/fifo"), 0644) == 0);
  assert (symlink ("../out.raw", at ("img/up")) == 0);
  assert (symlink (at ("img/in.raw"), at ("img/abs")) == 0);

  assert (qad_backing_rules_init (&follow, QAD_BACKING_FOLLOW, NULL,
                                  at ("img/top")) == 0);
  assert (qad_backing_rules_init (&inside, QAD_BACKING_INSIDE, NULL,
                                  at ("img/top")) == 0);
  assert (qad_backing_rules_init (&with_dir, QAD_BACKING_INSIDE,
                                  at ("extra"), at ("img/top")) == 0);
  assert (qad_backing_rules_init (&refuse, QAD_BACKING_INSIDE,
                                  at ("missing"), at ("img/top")) == -1);
  assert (qad_backing_rules_init (&refuse, QAD_BACKING_REFUSE, NULL,
                                  at ("img/top")) == 0);

  /* follow: everything as today (NULL rules too). */
  expect_ok (&follow, "in.raw");
  expect_ok (&follow, "../out.raw");
  expect_ok (&follow, "up");
  expect_ok (NULL, "../out.raw");

  /* inside */
  expect_ok (&inside, "in.raw");
  expect_ok (&inside, "abs");
  expect_ok (&inside, "../img/in.raw");
  expect_refused (&inside, "../out.raw");
  expect_refused (&inside, "up");
  expect_refused (&inside, "../extra/e.raw");
  expect_refused (&inside, "fifo");
  fd = qad_backing_open (&inside, "top", "/etc/passwd", "/etc/passwd");
  assert (fd == -1 && errno == EPERM);
  assert (qad_backing_check_name (&inside, "top", "nbd://h/x", true) == -1);
  assert (qad_backing_check_name (&inside, "top", "in.raw", false) == 0);

  /* inside with backing-dir */
  expect_ok (&with_dir, "../extra/e.raw");
  expect_refused (&with_dir, "../out.raw");

  /* refuse: everything. */
  expect_refused (&refuse, "in.raw");
  assert (qad_backing_check_name (&refuse, "top", "in.raw", false) == -1);

  /* The openat2 fallback confines the walk in the kernel. */
  fd = qad_backing_open_beneath (&inside, at ("img/in.raw"));
  if (fd == -1 && errno == ENOSYS)
    fprintf (stderr, "openat2 not available: fallback not tested\n");
  else {
    assert (fd >= 0);
    close (fd);
    fd = qad_backing_open_beneath (&inside, at ("img/up"));
    assert (fd == -1 && (errno == EXDEV || errno == ELOOP));
    fd = qad_backing_open_beneath (&inside, at ("img/../out.raw"));
    assert (fd == -1 && errno == EXDEV);
    fd = qad_backing_open_beneath (&with_dir, at ("extra/e.raw"));
    assert (fd >= 0);
    close (fd);
  }

  /* A symlink swapped between any check and the open. */
  {
    struct stat in_st, st;
    pthread_t th;
    unsigned i, opened = 0, refused = 0;

    assert (stat (at ("img/in.raw"), &in_st) == 0);
    assert (symlink ("in.raw", at ("img/swap")) == 0);
    assert (pthread_create (&th, NULL, swapper, NULL) == 0);
    for (i = 0; i < 20000; ++i) {
      fd = try_open (&inside, "swap");
      if (fd == -1) {
        assert (errno == EPERM || errno == ENOENT);
        refused++;
        continue;
      }
      assert (fstat (fd, &st) == 0);
      assert (st.st_ino == in_st.st_ino && st.st_dev == in_st.st_dev);
      opened++;
      close (fd);
    }
    __atomic_store_n (&stop, true, __ATOMIC_RELEASE);
    pthread_join (th, NULL);
    printf ("swap race: %u opened (all inside), %u refused\n",
            opened, refused);
    unlink (at ("img/swap"));
    unlink (at ("img/tmp"));
  }

  /* Reports. */
  assert (!qad_backing_leaves (&inside, NULL, at ("img/in.raw")));
  assert (qad_backing_leaves (&inside, NULL, at ("img/up")));
  assert (qad_backing_leaves (NULL, at ("img/top"), "/etc/passwd"));
  assert (qad_backing_leaves (NULL, at ("img/top"), at ("img/../nope")));

  qad_backing_rules_free (&follow);
  qad_backing_rules_free (&inside);
  qad_backing_rules_free (&with_dir);
  qad_backing_rules_free (&refuse);
  unlink (at ("img/up"));
  unlink (at ("img/abs"));
  unlink (at ("img/fifo"));
  unlink (at ("img/top"));
  unlink (at ("img/in.raw"));
  unlink (at ("out.raw"));
  unlink (at ("extra/e.raw"));
  rmdir (at ("img"));
  rmdir (at ("extra"));
  rmdir (t);
  return 0;
}
