/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of lock-and-replace (qdb-replace.h) in a temporary
 * directory: the lock refuses a second opener, the replacement is
 * locked before its name appears, leaves no temporary file behind and
 * holds the new model, and a failed replacement leaves the old file.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#undef NDEBUG
#include <assert.h>

#include "qad-error.h"
#include "qdb-replace.h"
#include "qdb.h"

static char dir[] = "/tmp/test-qdb-replace.XXXXXX";
static char path[64];

static void
quiet (const char *msg)
{
  if (getenv ("VERBOSE"))
    fprintf (stderr, "%s\n", msg);
}

static struct qdb_file *
model (const char *bitmap)
{
  struct qdb_file *qdb = qdb_new (path, 9);

  assert (qdb);
  assert (qdb_add_bitmap (qdb, bitmap, 512, 1 << 20,
                          QDB_FLAG_ENABLED) == 0);
  return qdb;
}

static size_t
entries (void)
{
  DIR *d = opendir (dir);
  size_t n = 0;

  assert (d);
  while (readdir (d))
    n++;
  closedir (d);
  return n - 2;
}

/* Read PATH back: it must hold exactly bitmap NAME. */
static void
check_holds (const char *name)
{
  int fd = open (path, O_RDONLY);
  struct qdb_io io;
  struct qdb_file *qdb;

  assert (fd >= 0);
  assert (qdb_io_init_fd (&io, &fd, path) == 0);
  qdb = qdb_read (&io, true);
  assert (qdb && qdb->nr_bitmaps == 1);
  assert (strcmp (qdb->bitmaps[0].name, name) == 0);
  qdb_free (qdb);
  close (fd);
}

int
main (void)
{
  struct qdb_file *qdb;
  struct stat before, after;
  int fd, fd2, new_fd;

  qad_set_error_handler (quiet);
  assert (mkdtemp (dir));
  snprintf (path, sizeof path, "%s/x.qdb", dir);

  /* Create, lock; a second opener is refused. */
  fd = qdb_open_locked (path, O_RDWR | O_CREAT);
  assert (fd >= 0);
  assert (qdb_open_locked (path, O_RDWR) == -1 && errno == EAGAIN);
  assert (fstat (fd, &before) == 0);

  /* Replace: a new inode under the name, locked, with the model. */
  qdb = model ("first");
  assert (qdb_replace_file (path, qdb, 0600, false, &new_fd) == 0);
  qdb_free (qdb);
  assert (new_fd >= 0);
  assert (stat (path, &after) == 0);
  assert (after.st_ino != before.st_ino);
  assert ((after.st_mode & 07777) == 0600);
  assert (entries () == 1);             /* no temporary file left */
  assert (qdb_open_locked (path, O_RDWR) == -1 && errno == EAGAIN);
  check_holds ("first");
  close (fd);
  close (new_fd);

  /* Once the lock is gone, the name opens (and locks) again. */
  fd2 = qdb_open_locked (path, O_RDWR);
  assert (fd2 >= 0);

  /* A replacement that cannot be written leaves the old file. */
  qdb = model ("second");
  free (qdb->bitmaps[0].bits);          /* qdb_write refuses this */
  qdb->bitmaps[0].bits = NULL;
  assert (qdb_replace_file (path, qdb, 0644, false, &new_fd) == -1);
  assert (new_fd == -1);
  check_holds ("first");
  assert (entries () == 1);
  qdb_free (qdb);
  close (fd2);

  unlink (path);
  rmdir (dir);
  return 0;
}
