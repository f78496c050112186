/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Lock-and-replace of QDB files.  The design notes and the lock order
 * are in qdb-replace.h: the old file's lock, then the new file's.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsync-dir.h"
#include "image-lock.h"
#include "qad-error.h"
#include "qdb-replace.h"

#define MAX_TRIES 10

int
qdb_open_locked (const char *path, int flags)
{
  int tries;

  for (tries = 0; tries < MAX_TRIES; ++tries) {
    struct stat a, b;
    int fd;

    fd = open (path, flags | O_CLOEXEC, 0644);
    if (fd == -1) {
      qad_error ("%s: open: %m", path);
      return -1;
    }
    if (qad_lock_whole_file (fd, path, QDB_LOCK_WHAT) == -1) {
      int e = errno;
      close (fd);
      errno = e;
      return -1;
    }
    if (fstat (fd, &a) == -1 || stat (path, &b) == -1) {
      qad_error ("%s: stat: %m", path);
      close (fd);
      return -1;
    }
    if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
      return fd;
    close (fd);                 /* replaced under us: try again */
  }
  qad_error ("%s: the file keeps being replaced", path);
  errno = EAGAIN;
  return -1;
}

int
qdb_replace_file (const char *path, struct qdb_file *model, mode_t mode,
                  bool allocate_all, int *new_fd)
{
  CLEANUP_FREE char *tmp = NULL;
  struct qdb_io io;
  int fd;

  *new_fd = -1;
  if (asprintf (&tmp, "%s.tmpXXXXXX", path) == -1) {
    qad_error ("asprintf: %m");
    return -1;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    qad_error ("%s: %m", tmp);
    return -1;
  }
  if (qad_lock_whole_file (fd, tmp, "the new " QDB_LOCK_WHAT) == -1)
    goto err;
  if (fchmod (fd, mode) == -1 ||
      qdb_io_init_fd (&io, &fd, path) == -1 ||
      qdb_write (&io, model, allocate_all) == -1 || fsync (fd) == -1 ||
      rename (tmp, path) == -1) {
    qad_error ("%s: writing the new QDB file %s: %m", path, tmp);
    goto err;
  }
  *new_fd = fd;
  /* The new name must be durable before anything relies on it. */
  if (qad_fsync_dir_of (path) == -1) {
    qad_error ("%s: fsync of its directory: %m", path);
    return -1;
  }
  return 0;

 err:
  close (fd);
  unlink (tmp);
  return -1;
}
