/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Scratch files of frozen bitmaps: see qdb-scratch.h for the naming
 * rule and why.
 */

#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsync-dir.h"
#include "qad-error.h"
#include "qdb-scratch.h"

#define PREFIX ".qdb-freeze-"
#define MAX_BASE 200            /* keeps the name under NAME_MAX (255) */
#define SUFFIX_LEN 6            /* mkstemp's XXXXXX */

/* 64-bit FNV-1a. */
static uint64_t
fnv1a (const char *s)
{
  uint64_t h = UINT64_C (0xcbf29ce484222325);

  for (; *s; ++s) {
    h ^= (unsigned char) *s;
    h *= UINT64_C (0x100000001b3);
  }
  return h;
}

char *
qdb_scratch_prefix (const char *qdb_path)
{
  CLEANUP_FREE char *real = realpath (qdb_path, NULL);
  const char *slash = strrchr (qdb_path, '/');
  const char *base = slash ? slash + 1 : qdb_path;
  char *prefix;

  /* A QDB file that does not exist (yet) has no scratch files; its
   * path as given still names it consistently.
   */
  if (asprintf (&prefix, PREFIX "%.*s-%016" PRIx64 "-", MAX_BASE, base,
                fnv1a (real ? real : qdb_path)) == -1)
    return NULL;
  return prefix;
}

int
qdb_scratch_open (const char *dir, const char *qdb_path, bool try_tmpfile)
{
  CLEANUP_FREE char *prefix = NULL, *tmpl = NULL;
  int fd;

#ifdef O_TMPFILE
  if (try_tmpfile) {
    fd = open (dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
      return fd;
    /* Not supported by the kernel or the file system (EISDIR,
     * EOPNOTSUPP, ...): any other error, mkstemp meets again.
     */
  }
#endif

  prefix = qdb_scratch_prefix (qdb_path);
  if (!prefix || asprintf (&tmpl, "%s/%sXXXXXX", dir, prefix) == -1)
    return -1;
  fd = mkostemp (tmpl, O_CLOEXEC);
  if (fd == -1)
    return -1;
  if (unlink (tmpl) == -1) {
    int e = errno;
    close (fd);
    errno = e;
    return -1;
  }
  /* Make the unlink durable.  If this fails, the name a crash might
   * leave is removed at the next start (qdb_scratch_remove_stale).
   */
  (void) qad_fsync_dir_of (tmpl);
  return fd;
}

/* Whether NAME is PREFIX followed by exactly SUFFIX_LEN letters or
 * digits, as mkstemp makes them.
 */
static bool
is_scratch_name (const char *name, const char *prefix)
{
  const size_t n = strlen (prefix);
  size_t i;

  if (strncmp (name, prefix, n) != 0 || strlen (name) != n + SUFFIX_LEN)
    return false;
  for (i = n; i < n + SUFFIX_LEN; ++i)
    if (!((name[i] >= 'a' && name[i] <= 'z') ||
          (name[i] >= 'A' && name[i] <= 'Z') ||
          (name[i] >= '0' && name[i] <= '9')))
      return false;
  return true;
}

int
qdb_scratch_remove_stale (const char *dir, const char *qdb_path)
{
  CLEANUP_FREE char *prefix = qdb_scratch_prefix (qdb_path);
  struct dirent *d;
  DIR *dp;
  int n = 0;

  if (!prefix) {
    qad_error ("%s: %m", qdb_path);
    return -1;
  }
  dp = opendir (dir);
  if (!dp) {
    qad_error ("%s: reading the scratch directory, to remove the stale "
               "scratch files of %s: %m", dir, qdb_path);
    return -1;
  }
  for (;;) {
    struct stat st;

    errno = 0;
    d = readdir (dp);
    if (!d)
      break;
    if (!is_scratch_name (d->d_name, prefix))
      continue;
    if (fstatat (dirfd (dp), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
      if (errno == ENOENT)
        continue;
      goto err;
    }
    if (!S_ISREG (st.st_mode) || st.st_uid != geteuid ())
      continue;
    if (unlinkat (dirfd (dp), d->d_name, 0) == -1) {
      if (errno == ENOENT)
        continue;
      goto err;
    }
    n++;
  }
  if (errno != 0) {
    qad_error ("%s: reading the scratch directory, to remove the stale "
               "scratch files of %s: %m", dir, qdb_path);
    closedir (dp);
    return -1;
  }
  closedir (dp);
  return n;

 err:
  qad_error ("%s/%s: removing a stale scratch file of %s: %m",
             dir, d->d_name, qdb_path);
  closedir (dp);
  return -1;
}
