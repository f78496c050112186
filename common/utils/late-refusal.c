/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* See late-refusal.h. */

#include <config.h>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "late-refusal.h"

/* The stderr of the process before the fork (-1: not kept). */
static int saved_stderr = -1;

void
late_refusal_prepare (void)
{
  if (saved_stderr == -1)
    saved_stderr = fcntl (STDERR_FILENO, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
}

static bool
same_file (int fd1, int fd2)
{
  struct stat a, b;

  return fstat (fd1, &a) == 0 && fstat (fd2, &b) == 0 &&
    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static bool
is_listening (int fd)
{
  int v = 0;
  socklen_t len = sizeof v;

  return getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

/* Refuse new connections on FD and close those queued on it. */
static void
refuse_listener (int fd)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };

  shutdown (fd, SHUT_RDWR);
  while (poll (&p, 1, 0) == 1 && (p.revents & POLLIN)) {
    int c = accept (fd, NULL, NULL);
    if (c == -1)
      break;
    close (c);
  }
}

void
late_refusal_report (const char *line)
{
  DIR *dir;
  struct dirent *d;

  if (saved_stderr >= 0 && !same_file (saved_stderr, STDERR_FILENO))
    dprintf (saved_stderr, "%s\n", line);

  dir = opendir ("/proc/self/fd");
  if (!dir)
    return;
  while ((d = readdir (dir)) != NULL) {
    int fd = atoi (d->d_name);
    if (d->d_name[0] != '.' && fd != dirfd (dir) && is_listening (fd))
      refuse_listener (fd);
  }
  closedir (dir);
}
