/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the scratch files of frozen bitmaps (qdb-scratch.h):
 * with O_TMPFILE a scratch file never has a name; the fallback's name
 * follows the rule and is gone once the file is open; and the removal
 * of stale names takes exactly the names of its own QDB file.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qdb-scratch.h"

static char dir[] = "/tmp/test-qdb-scratch.XXXXXX";

/* Entries of DIR besides "." and "..". */
static unsigned
entries (void)
{
  DIR *dp = opendir (dir);
  struct dirent *d;
  unsigned n = 0;

  assert (dp);
  while ((d = readdir (dp)) != NULL)
    n += strcmp (d->d_name, ".") != 0 && strcmp (d->d_name, "..") != 0;
  closedir (dp);
  return n;
}

/* What /proc says FD is (a removed file ends in " (deleted)"). */
static void
fd_path (int fd, char *buf, size_t len)
{
  char proc[64];
  ssize_t r;

  snprintf (proc, sizeof proc, "/proc/self/fd/%d", fd);
  r = readlink (proc, buf, len - 1);
  assert (r > 0);
  buf[r] = '\0';
}

static void
touch (const char *name)
{
  char path[PATH_MAX];
  int fd;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  assert (fd >= 0);
  close (fd);
}

static bool
exists (const char *name)
{
  char path[PATH_MAX];
  struct stat st;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  return lstat (path, &st) == 0;
}

int
main (void)
{
  char qdb[PATH_MAX], other[PATH_MAX], link[PATH_MAX], name[PATH_MAX];
  char *prefix, *other_prefix;
  int fd, probe;

  assert (mkdtemp (dir) != NULL);
  snprintf (qdb, sizeof qdb, "%s/disk.qdb", dir);
  snprintf (other, sizeof other, "%s/sub/disk.qdb", dir);
  touch ("disk.qdb");

  /* The rule: base name, hash of the path, so the same base name in
   * another directory differs.
   */
  prefix = qdb_scratch_prefix (qdb);
  other_prefix = qdb_scratch_prefix (other);
  assert (prefix && other_prefix);
  assert (strncmp (prefix, ".qdb-freeze-disk.qdb-", 21) == 0);
  assert (strlen (prefix) == 21 + 16 + 1);
  assert (prefix[strlen (prefix) - 1] == '-');
  assert (strncmp (other_prefix, ".qdb-freeze-disk.qdb-", 21) == 0);
  assert (strcmp (prefix, other_prefix) != 0);

  /* O_TMPFILE, where this file system has it: no name, ever. */
  probe = open (dir, O_TMPFILE | O_RDWR, 0600);
  fd = qdb_scratch_open (dir, qdb, true);
  assert (fd >= 0);
  fd_path (fd, link, sizeof link);
  if (probe >= 0) {
    assert (strstr (link, ".qdb-freeze-") == NULL);
    close (probe);
  }
  else
    printf ("%s: no O_TMPFILE here, only the fallback is tested\n", dir);
  assert (entries () == 1);
  assert (pwrite (fd, "x", 1, 1 << 20) == 1);
  close (fd);

  /* The fallback: a name by the rule, unlinked before it returns. */
  fd = qdb_scratch_open (dir, qdb, false);
  assert (fd >= 0);
  fd_path (fd, link, sizeof link);
  snprintf (name, sizeof name, "%s/%s", dir, prefix);
  assert (strncmp (link, name, strlen (name)) == 0);
  assert (strcmp (link + strlen (name) + 6, " (deleted)") == 0);
  assert (entries () == 1);
  close (fd);

  /* Stale names: only exact ones of this QDB file, regular files. */
  snprintf (name, sizeof name, "%sAb3xY9", prefix);
  touch (name);
  snprintf (name, sizeof name, "%szzzzzz", prefix);
  touch (name);
  snprintf (name, sizeof name, "%sAb3xY", prefix);            /* short */
  touch (name);
  snprintf (name, sizeof name, "%sAb3xY99", prefix);          /* long */
  touch (name);
  snprintf (name, sizeof name, "%sAb3-Y9", prefix);           /* not mkstemp's */
  touch (name);
  snprintf (name, sizeof name, "%sAb3xY9", other_prefix);     /* other file */
  touch (name);
  snprintf (name, sizeof name, "%sdir123", prefix);           /* directory */
  snprintf (link, sizeof link, "%s/%s", dir, name);
  assert (mkdir (link, 0700) == 0);
  snprintf (name, sizeof name, "%slnk123", prefix);           /* symlink */
  snprintf (link, sizeof link, "%s/%s", dir, name);
  assert (symlink (qdb, link) == 0);
  touch (".qdb-freeze-b1-Ab3xY9");       /* older versions' names */
  assert (entries () == 10);

  assert (qdb_scratch_remove_stale (dir, qdb) == 2);
  assert (entries () == 8);
  snprintf (name, sizeof name, "%sAb3xY9", prefix);
  assert (!exists (name));
  snprintf (name, sizeof name, "%szzzzzz", prefix);
  assert (!exists (name));
  snprintf (name, sizeof name, "%sAb3xY9", other_prefix);
  assert (exists (name));
  snprintf (name, sizeof name, "%slnk123", prefix);
  assert (exists (name));
  assert (exists ("disk.qdb"));
  assert (qdb_scratch_remove_stale (dir, qdb) == 0);

  /* A directory that cannot be read is reported, naming it. */
  snprintf (name, sizeof name, "%s/nosuch", dir);
  assert (qdb_scratch_remove_stale (name, qdb) == -1);

  /* Clean up. */
  {
    char cmd[PATH_MAX + 16];
    snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
    assert (system (cmd) == 0);
  }
  free (prefix);
  free (other_prefix);
  return 0;
}
