/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of qad_lock_image (QEMU's byte-range image locking, on
 * open file descriptions): readers share, a writer excludes readers
 * and writers, a reader excludes writers, a lock goes away with the
 * descriptor holding it, and the refusal names the image.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image-lock.h"
#include "qad-error.h"

static char last_error[1024];

static void
save_error (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static char path[] = "/tmp/test-image-lock.XXXXXX";

/* Each call opens a new open file description (OFD locks are per
 * description, so two of them in one process conflict as two
 * processes would).
 */
static int
open_locked (bool write, int *fd)
{
  *fd = open (path, write ? O_RDWR : O_RDONLY);
  assert (*fd >= 0);
  last_error[0] = '\0';
  return qad_lock_image (*fd, "the-image", write);
}

static void
refused (bool write)
{
  int fd;
  errno = 0;
  assert (open_locked (write, &fd) == -1);
  assert (errno == EAGAIN);
  assert (strstr (last_error, "the-image: ") == last_error);
  assert (strstr (last_error, "another process") != NULL);
  assert (close (fd) == 0);
}

int
main (void)
{
  int fd, r1, r2, w;

  qad_set_error_handler (save_error);
  fd = mkstemp (path);
  assert (fd >= 0);
  assert (close (fd) == 0);

  /* Two readers share; a writer is refused while either holds it. */
  assert (open_locked (false, &r1) == 0);
  assert (open_locked (false, &r2) == 0);
  refused (true);
  assert (close (r1) == 0);
  refused (true);
  assert (close (r2) == 0);

  /* With the readers gone, a writer gets it and excludes both. */
  assert (open_locked (true, &w) == 0);
  refused (true);
  refused (false);
  assert (close (w) == 0);

  /* Closing released everything: a writer again. */
  assert (open_locked (true, &w) == 0);
  assert (close (w) == 0);

  /* The whole-file lock: one holder at a time, released on close. */
  w = open (path, O_RDWR);
  r1 = open (path, O_RDWR);
  assert (w >= 0 && r1 >= 0);
  assert (qad_lock_whole_file (w, "the-file", "test file") == 0);
  errno = 0;
  assert (qad_lock_whole_file (r1, "the-file", "test file") == -1);
  assert (errno == EAGAIN);
  assert (strstr (last_error,
                  "the-file: test file is in use by another process") ==
          last_error);
  assert (close (w) == 0);
  assert (qad_lock_whole_file (r1, "the-file", "test file") == 0);
  assert (close (r1) == 0);

  assert (unlink (path) == 0);
  return EXIT_SUCCESS;
}
