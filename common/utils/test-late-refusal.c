/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of late-refusal.h, in the layout of nbdkit --run: this
 * process binds a listening socket and keeps it while a forked child
 * (the captive server) refuses.  The child's stderr is no longer the
 * one saved before the fork (as in the background), so the line must
 * go to the saved one; a client queued before the refusal must see
 * its connection closed, and a later one must be refused, although
 * this process still holds the socket.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "late-refusal.h"

static int
connect_to (const struct sockaddr_un *addr)
{
  int fd = socket (AF_UNIX, SOCK_STREAM, 0);

  assert (fd >= 0);
  if (connect (fd, (const struct sockaddr *) addr, sizeof *addr) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  return fd;
}

int
main (void)
{
  char dir[] = "/tmp/test-late-refusal.XXXXXX";
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int lfd, queued, pipefd[2], saved, status, devnull;
  struct pollfd p;
  char line[128], c;
  ssize_t n;
  pid_t pid;

  assert (mkdtemp (dir) != NULL);
  snprintf (addr.sun_path, sizeof addr.sun_path, "%s/sock", dir);
  lfd = socket (AF_UNIX, SOCK_STREAM, 0);
  assert (lfd >= 0);
  assert (bind (lfd, (struct sockaddr *) &addr, sizeof addr) == 0);
  assert (listen (lfd, 8) == 0);

  /* stderr is a pipe we read, before the "fork". */
  assert (pipe (pipefd) == 0);
  saved = dup (STDERR_FILENO);
  assert (dup2 (pipefd[1], STDERR_FILENO) == STDERR_FILENO);
  late_refusal_prepare ();
  assert (dup2 (saved, STDERR_FILENO) == STDERR_FILENO);
  close (pipefd[1]);

  queued = connect_to (&addr);
  assert (queued >= 0);

  pid = fork ();
  assert (pid >= 0);
  if (pid == 0) {
    devnull = open ("/dev/null", O_WRONLY);
    dup2 (devnull, STDERR_FILENO);
    late_refusal_report ("nbdkit: error: refused");
    _exit (0);
  }
  assert (waitpid (pid, &status, 0) == pid && status == 0);

  /* This process holds a copy of the saved stderr too: do not wait. */
  assert (fcntl (pipefd[0], F_SETFL, O_NONBLOCK) == 0);
  n = read (pipefd[0], line, sizeof line - 1);
  assert (n > 0);
  line[n] = '\0';
  assert (strcmp (line, "nbdkit: error: refused\n") == 0);

  /* The queued client is let go at once: EOF (or a reset). */
  p.fd = queued;
  p.events = POLLIN;
  assert (poll (&p, 1, 5000) == 1);
  n = read (queued, &c, 1);
  assert (n == 0 || (n == -1 && errno == ECONNRESET));
  close (queued);

  /* A new client is refused, though lfd is still open here. */
  assert (connect_to (&addr) == -1 && errno == ECONNREFUSED);

  close (lfd);
  unlink (addr.sun_path);
  rmdir (dir);
  return 0;
}
