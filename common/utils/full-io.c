/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "full-io.h"

static int
do_pread (int fd, void *buf, size_t count, uint64_t offset, int eof_is_zero)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      if (!eof_is_zero) {
        errno = EIO;
        return -1;
      }
      memset (p, 0, count);
      return 0;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  return do_pread (fd, buf, count, offset, 0);
}

int
pread_or_zero (int fd, void *buf, size_t count, uint64_t offset)
{
  return do_pread (fd, buf, count, offset, 1);
}

int
full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

int
fd_io_pread (void *fdp, void *buf, size_t count, uint64_t offset)
{
  return full_pread (*(int *) fdp, buf, count, offset);
}

int
fd_io_pwrite (void *fdp, const void *buf, size_t count, uint64_t offset)
{
  return full_pwrite (*(int *) fdp, buf, count, offset);
}

int
fd_io_sync (void *fdp)
{
  return fdatasync (*(int *) fdp);
}
