/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the LD_PRELOAD test libraries (fault-inject.c, which fails
 * calls, and powercut/recorder.c, which records them) share: which
 * file a descriptor names.  Both ask /proc/self/fd rather than track
 * open(), so descriptors opened before the library was initialised
 * are seen too.  Header-only: each library is one object.
 */

#ifndef QAD_TESTS_FD_PATH_H
#define QAD_TESTS_FD_PATH_H

#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

/* The path descriptor FD names, in PATH (LEN bytes).  False when FD is
 * not open or the path does not fit (never a truncated path).
 */
static inline bool
fd_path (int fd, char *path, size_t len)
{
  char link[64];
  ssize_t r;

  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  r = readlink (link, path, len);
  if (r <= 0 || (size_t) r >= len)
    return false;
  path[r] = '\0';
  return true;
}

#endif /* QAD_TESTS_FD_PATH_H */
