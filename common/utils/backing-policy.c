/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * Checking a name and then opening it leaves a window: a symbolic
 * link replaced in between makes the open land somewhere else.  So
 * under "inside" the file is opened first (O_NONBLOCK, so that a FIFO
 * cannot hang us; O_NOCTTY) and the check is made on the descriptor:
 * the kernel's name for it, read from /proc/self/fd/N, must lie below
 * an allowed directory, and that name must still lead to the same
 * device and inode (a file renamed or replaced since the open is
 * refused rather than guessed about).  Whatever link swap happened
 * before the open, the descriptor is what we will read, and it is
 * what was checked.
 *
 * Without /proc, the fallback is openat2 with RESOLVE_BENEATH relative
 * to each allowed directory: the kernel itself refuses any ".." or
 * symbolic link that would leave it (absolute links included).  With
 * neither, "inside" refuses: it never degrades to a name check.
 *
 * Allowed directories are canonicalised once (realpath) when the
 * rules are set up, so comparisons are between canonical paths.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined (__linux__) && defined (SYS_openat2) && \
  defined (__has_include)
#if __has_include (<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2 1
#endif
#endif

#include "backing-policy.h"
#include "cleanup.h"
#include "qad-error.h"

int
qad_backing_policy_parse (const char *str, enum qad_backing_policy *p)
{
  if (strcmp (str, "follow") == 0)
    *p = QAD_BACKING_FOLLOW;
  else if (strcmp (str, "inside") == 0)
    *p = QAD_BACKING_INSIDE;
  else if (strcmp (str, "refuse") == 0)
    *p = QAD_BACKING_REFUSE;
  else {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

const char *
qad_backing_policy_name (enum qad_backing_policy p)
{
  switch (p) {
  case QAD_BACKING_FOLLOW: return "follow";
  case QAD_BACKING_INSIDE: return "inside";
  case QAD_BACKING_REFUSE: return "refuse";
  }
  return "?";
}

/* The directory part of the canonical path of FILE (which need not
 * exist yet: then its directory is canonicalised).  Caller frees.
 */
static char *
canonical_dir_of (const char *file)
{
  char *real = realpath (file, NULL);
  char *slash;

  if (real == NULL && errno == ENOENT) {
    const char *s = strrchr (file, '/');
    CLEANUP_FREE char *dir =
      s == NULL ? strdup (".") : s == file ? strdup ("/")
      : strndup (file, s - file);
    return dir ? realpath (dir, NULL) : NULL;
  }
  if (real == NULL)
    return NULL;
  slash = strrchr (real, '/');
  if (slash == real)
    slash[1] = '\0';            /* a file in / */
  else
    *slash = '\0';
  return real;
}

int
qad_backing_rules_init (struct qad_backing_rules *r,
                        enum qad_backing_policy policy,
                        const char *backing_dir, const char *top_image)
{
  struct stat st;

  r->policy = policy;
  r->param = NULL;
  r->top_dir = NULL;
  r->backing_dir = NULL;
  r->top_dir = canonical_dir_of (top_image);
  if (r->top_dir == NULL) {
    qad_error ("%s: cannot resolve the image's directory: %m", top_image);
    return -1;
  }
  if (backing_dir) {
    r->backing_dir = realpath (backing_dir, NULL);
    if (r->backing_dir == NULL || stat (r->backing_dir, &st) == -1) {
      qad_error ("backing-dir=%s: %m", backing_dir);
      qad_backing_rules_free (r);
      return -1;
    }
    if (!S_ISDIR (st.st_mode)) {
      qad_error ("backing-dir=%s: not a directory", backing_dir);
      qad_backing_rules_free (r);
      errno = ENOTDIR;
      return -1;
    }
  }
  return 0;
}

void
qad_backing_rules_free (struct qad_backing_rules *r)
{
  free (r->top_dir);
  free (r->backing_dir);
  r->top_dir = r->backing_dir = NULL;
}

bool
qad_path_is_below (const char *p, const char *dir)
{
  size_t n = strlen (dir);

  if (n > 0 && dir[n - 1] == '/')
    n--;                        /* dir is "/" */
  return strncmp (p, dir, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

static bool
allowed (const struct qad_backing_rules *r, const char *canonical)
{
  return qad_path_is_below (canonical, r->top_dir) ||
    (r->backing_dir && qad_path_is_below (canonical, r->backing_dir));
}

/* The parameter that set the policy, for messages. */
static const char *
param (const struct qad_backing_rules *r)
{
  return r->param ? r->param : "backing-policy";
}

/* " or BACKING_DIR" for messages. */
static const char *
or_dir (const struct qad_backing_rules *r, char *buf, size_t n)
{
  if (r->backing_dir)
    snprintf (buf, n, " and backing-dir %s", r->backing_dir);
  else
    buf[0] = '\0';
  return buf;
}

int
qad_backing_check_name (const struct qad_backing_rules *r, const char *image,
                        const char *name, bool is_uri)
{
  if (r == NULL || r->policy == QAD_BACKING_FOLLOW)
    return 0;
  if (r->policy == QAD_BACKING_REFUSE) {
    qad_error ("%s: backing file %s refused by %s=refuse "
               "(the image names a backing file)", image, name, param (r));
    errno = EPERM;
    return -1;
  }
  if (is_uri) {
    qad_error ("%s: backing %s refused by %s=inside "
               "(a URI is never inside the image's directory)", image, name,
               param (r));
    errno = EPERM;
    return -1;
  }
  return 0;
}

/* PATH made absolute and lexically normalised ("." and ".." folded),
 * without looking at the file system.  Caller frees.
 */
static char *
lexical_abs (const char *path)
{
  CLEANUP_FREE char *cwd = NULL;
  char *in, *out, *p, *save = NULL, *tok;
  size_t len;

  if (path[0] != '/') {
    cwd = getcwd (NULL, 0);
    if (cwd == NULL || asprintf (&in, "%s/%s", cwd, path) == -1)
      return NULL;
  }
  else if ((in = strdup (path)) == NULL)
    return NULL;
  len = strlen (in);
  out = malloc (len + 2);
  if (out == NULL) {
    free (in);
    return NULL;
  }
  out[0] = '\0';
  for (p = in; (tok = strtok_r (p, "/", &save)) != NULL; p = NULL) {
    if (strcmp (tok, ".") == 0)
      continue;
    if (strcmp (tok, "..") == 0) {
      char *slash = strrchr (out, '/');
      if (slash)
        *slash = '\0';
      continue;
    }
    strcat (out, "/");
    strcat (out, tok);
  }
  if (out[0] == '\0')
    strcpy (out, "/");
  free (in);
  return out;
}

int
qad_backing_open_beneath (const struct qad_backing_rules *r, const char *path)
{
#ifdef HAVE_OPENAT2
  CLEANUP_FREE char *abs = lexical_abs (path);
  const char *dirs[2] = { r->top_dir, r->backing_dir };
  size_t i;

  if (abs == NULL)
    return -1;
  /* Name the file relative to an allowed directory and let the kernel
   * walk from there: lexically ".." has been folded, but the kernel
   * still refuses symbolic links that leave (EXDEV).
   */
  for (i = 0; i < 2; ++i) {
    struct open_how how = {
      .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    size_t n;
    int dfd, fd;

    if (dirs[i] == NULL || !qad_path_is_below (abs, dirs[i]))
      continue;
    n = strlen (dirs[i]);
    dfd = open (dirs[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1)
      return -1;
    fd = syscall (SYS_openat2, dfd,
                  abs[n] == '/' ? abs + n + 1 : ".", &how, sizeof how);
    close (dfd);
    if (fd >= 0 || errno != EXDEV)
      return fd;
  }
  errno = EXDEV;
  return -1;
#else
  errno = ENOSYS;
  return -1;
#endif
}

/* The kernel's name for FD, checked to still lead to the same file.
 * NULL with errno ENOENT when /proc cannot tell.  Caller frees.
 */
static char *
fd_name (int fd, const struct stat *st)
{
  char link[64], *buf;
  struct stat st2;
  ssize_t n;

  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  buf = malloc (PATH_MAX + 1);
  if (buf == NULL)
    return NULL;
  n = readlink (link, buf, PATH_MAX);
  if (n <= 0 || buf[0] != '/') {
    free (buf);
    errno = ENOENT;
    return NULL;
  }
  buf[n] = '\0';
  if (stat (buf, &st2) == -1 ||
      st2.st_dev != st->st_dev || st2.st_ino != st->st_ino) {
    free (buf);
    errno = ESTALE;
    return NULL;
  }
  return buf;
}

/* WHERE: the canonical path it resolved to, or NULL when the kernel
 * refused the walk (openat2) without saying where it led.
 */
static int
refuse_outside (const struct qad_backing_rules *r, const char *image,
                const char *name, const char *where)
{
  char extra[PATH_MAX + 32];

  qad_error ("%s: backing file %s refused by %s=inside: "
             "it %s%s, outside %s%s", image, name, param (r),
             where ? "resolves to " : "leads", where ? where : "",
             r->top_dir, or_dir (r, extra, sizeof extra));
  errno = EPERM;
  return -1;
}

/* FD from an open of PATH, or -1: the error is reported here, and *ST
 * filled in.  Returns FD, or -1 (FD closed).
 */
static int
opened (int fd, const char *path, struct stat *st)
{
  if (fd == -1) {
    qad_error ("%s: cannot open backing file: %m", path);
    return -1;
  }
  if (fstat (fd, st) == -1) {
    int saved_errno = errno;
    qad_error ("%s: fstat: %m", path);
    close (fd);
    errno = saved_errno;
    return -1;
  }
  return fd;
}

static int
clear_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);

  return fl == -1 ? -1 : fcntl (fd, F_SETFL, fl & ~O_NONBLOCK);
}

int
qad_backing_open (const struct qad_backing_rules *r, const char *image,
                  const char *name, const char *path)
{
  CLEANUP_FREE char *real = NULL;
  struct stat st;
  int fd;

  if (r == NULL || r->policy == QAD_BACKING_FOLLOW) {
    fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd == -1)
      qad_error ("%s: cannot open backing file: %m", path);
    return fd;
  }
  if (qad_backing_check_name (r, image, name, false) == -1)
    return -1;

  fd = opened (open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK),
               path, &st);
  if (fd == -1)
    return -1;
  real = fd_name (fd, &st);
  if (real == NULL && errno == ESTALE) {
    qad_error ("%s: backing file %s refused by %s=inside: "
               "it was renamed or replaced while being opened",
               image, name, param (r));
    errno = EPERM;
    goto err;
  }
  if (real == NULL) {
    /* No /proc: let the kernel confine the walk instead. */
    close (fd);
    fd = qad_backing_open_beneath (r, path);
    if (fd == -1 && errno == ENOSYS) {
      qad_error ("%s: backing file %s refused by %s=inside: "
                 "cannot verify where it leads (neither /proc/self/fd nor "
                 "openat2 is available)", image, name, param (r));
      errno = EPERM;
      return -1;
    }
    if (fd == -1 && (errno == EXDEV || errno == ELOOP))
      return refuse_outside (r, image, name, NULL);
    fd = opened (fd, path, &st);
    if (fd == -1)
      return -1;
  }
  else if (!allowed (r, real)) {
    refuse_outside (r, image, name, real);
    goto err;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    qad_error ("%s: backing file %s refused by %s=inside: "
               "not a regular file or block device", image, name,
               param (r));
    errno = EPERM;
    goto err;
  }
  if (clear_nonblock (fd) == -1) {
    qad_error ("%s: fcntl: %m", path);
    goto err;
  }
  return fd;

 err:
  {
    int saved_errno = errno;
    close (fd);
    errno = saved_errno;
  }
  return -1;
}

bool
qad_backing_leaves (const struct qad_backing_rules *r, const char *image,
                    const char *path)
{
  CLEANUP_FREE char *real = realpath (path, NULL);
  CLEANUP_FREE char *dir = NULL;

  if (real == NULL)
    real = lexical_abs (path);
  if (r == NULL || r->top_dir == NULL)
    dir = canonical_dir_of (image);
  if (real == NULL || (dir == NULL && (r == NULL || r->top_dir == NULL)))
    return true;
  return !qad_path_is_below (real, dir ? dir : r->top_dir);
}
