/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Regression tests for the QED repair, one function per bug found by
 * the read-write fuzz target (fuzz/fuzz-qed-rw.c).
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"

#define CS 4096

static char dir[] = "/tmp/test-qed-repair.XXXXXX";

static const char *
path_of (const char *name)
{
  static char buf[256];
  snprintf (buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static struct qed_image *
open_rw (const char *path)
{
  struct qed_open_options o = { .readonly = false };
  struct qed_image *img = qed_open (path, &o);
  assert (img != NULL);
  return img;
}

/* A file ending in a partial cluster (trailing bytes QED does not
 * define) checked clean with no leaks, so the repair left the partial
 * cluster; the next allocation starts past it, which made it a whole
 * leaked cluster: repaired image, writes, clean close, and the check
 * found a leak.  The repair now truncates the partial cluster.
 */
static void
test_partial_tail (void)
{
  struct qed_create_options co = { .size = 1 << 20, .cluster_size = CS,
                                   .table_size = 1 };
  const char *path = path_of ("tail.qed");
  struct qed_check_result res;
  struct qed_image *img;
  struct stat st;
  char buf[512];
  int fd;

  assert (qed_create (path, &co) == 0);
  /* Header and L1 are two clusters: add 1000 bytes of garbage. */
  fd = open (path, O_RDWR);
  assert (fd >= 0);
  memset (buf, 0x5a, sizeof buf);
  assert (full_pwrite (fd, buf, sizeof buf, 2 * CS) == 0);
  assert (full_pwrite (fd, buf, 1000 - sizeof buf, 2 * CS + sizeof buf) == 0);
  close (fd);

  img = open_rw (path);
  assert (qed_check (img, true, &res, NULL, NULL) == 0);
  assert (res.corruptions == 0 && res.leaks == 0);
  assert (stat (path, &st) == 0 && st.st_size == 2 * CS);
  memset (buf, 0x77, sizeof buf);
  assert (qed_pwrite (img, buf, sizeof buf, 12345, false) == 0);
  assert (qed_close (img) == 0);

  img = open_rw (path);
  assert (qed_check (img, false, &res, NULL, NULL) == 0);
  if (res.corruptions || res.leaks) {
    fprintf (stderr, "FAIL: after repair and a write: %llu corruptions, "
             "%llu leaks\n", (unsigned long long) res.corruptions,
             (unsigned long long) res.leaks);
    exit (EXIT_FAILURE);
  }
  memset (buf, 0, sizeof buf);
  assert (qed_pread (img, buf, sizeof buf, 12345) == 0);
  assert (buf[0] == 0x77 && buf[sizeof buf - 1] == 0x77);
  assert (qed_close (img) == 0);
}

int
main (void)
{
  assert (mkdtemp (dir) != NULL);
  test_partial_tail ();
  if (fork () == 0)
    execlp ("rm", "rm", "-rf", dir, (char *) NULL);
  return 0;
}
