/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of full_pread, pread_or_zero and full_pwrite: whole
 * buffers, end of file (an error for full_pread, zeroes for
 * pread_or_zero, also when the file ends inside the buffer), writes
 * that extend the file, and errors passed through with errno.
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
#include <sys/stat.h>
#include <unistd.h>

#include "full-io.h"

int
main (void)
{
  char path[] = "/tmp/test-full-io.XXXXXX";
  char buf[8192], data[5000];
  struct stat st;
  int fd, rofd;
  size_t i;

  fd = mkstemp (path);
  assert (fd >= 0);
  for (i = 0; i < sizeof data; ++i)
    data[i] = 'a' + i % 26;

  /* A write far past the end extends the file (with a hole). */
  assert (full_pwrite (fd, data, sizeof data, 1000) == 0);
  assert (fstat (fd, &st) == 0 && st.st_size == 6000);
  assert (full_pwrite (fd, "", 0, 7000) == 0);           /* no-op */
  assert (fstat (fd, &st) == 0 && st.st_size == 6000);

  /* Whole reads. */
  memset (buf, 'x', sizeof buf);
  assert (full_pread (fd, buf, 5000, 1000) == 0);
  assert (memcmp (buf, data, 5000) == 0);
  assert (full_pread (fd, buf, 1000, 0) == 0);
  for (i = 0; i < 1000; ++i)
    assert (buf[i] == 0);                               /* the hole */

  /* Past the end: full_pread fails with EIO... */
  errno = 0;
  assert (full_pread (fd, buf, 100, 5950) == -1 && errno == EIO);
  errno = 0;
  assert (full_pread (fd, buf, 1, 6000) == -1 && errno == EIO);
  /* ... pread_or_zero returns the data, then zeroes. */
  memset (buf, 'x', sizeof buf);
  assert (pread_or_zero (fd, buf, 100, 5950) == 0);
  assert (memcmp (buf, data + 4950, 50) == 0);
  for (i = 50; i < 100; ++i)
    assert (buf[i] == 0);
  assert (buf[100] == 'x');                             /* no overrun */
  memset (buf, 'x', sizeof buf);
  assert (pread_or_zero (fd, buf, sizeof buf, 1 << 20) == 0);
  for (i = 0; i < sizeof buf; ++i)
    assert (buf[i] == 0);

  /* Errors pass through with errno. */
  rofd = open (path, O_RDONLY);
  assert (rofd >= 0);
  errno = 0;
  assert (full_pwrite (rofd, data, 10, 0) == -1 && errno == EBADF);
  assert (close (rofd) == 0);
  errno = 0;
  assert (full_pread (-1, buf, 10, 0) == -1 && errno == EBADF);
  errno = 0;
  assert (pread_or_zero (-1, buf, 10, 0) == -1 && errno == EBADF);

  assert (close (fd) == 0);
  assert (unlink (path) == 0);
  return EXIT_SUCCESS;
}
