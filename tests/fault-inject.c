/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* fault-inject.so: an LD_PRELOAD library that makes one chosen call of
 * a server fail, for the I/O-error tests (test-*-faults.bats).
 *
 * Environment (read once, at load):
 *   FAULT_PATH    only calls on files whose path starts with this
 *                 (required: without it the library does nothing)
 *   FAULT_CALL    the kinds counted, comma-separated: write (pwrite,
 *                 pwrite64, pwritev, write), sync (fsync, fdatasync,
 *                 sync_file_range), truncate (ftruncate), fallocate
 *                 (fallocate, posix_fallocate); default all four
 *   FAULT_NTH     fail the Nth counted call (1-based); unset or 0:
 *                 fail nothing, only count and log
 *   FAULT_TIMES   fail this many counted calls from the Nth on
 *                 (default 1; 0 means every one from the Nth on)
 *   FAULT_ERRNO   EIO (default), ENOSPC, or a number
 *   FAULT_KILL    when set (non-empty), the chosen call kills the
 *                 process with SIGKILL before it runs instead of
 *                 failing: a kill -9 at an exact point, for crash tests
 *                 of offline tools (test-tool-commit.bats)
 *   FAULT_SWITCH  a file name: calls are counted only while it exists
 *   FAULT_LOG     append one line per counted call to this file:
 *                 "<kind> <n> <site>", and "INJECT <kind> <n> <site>"
 *                 for a failed one.  <site> names the caller's stack as
 *                 module+offset frames, so the test can pick the first
 *                 call of every distinct call site.
 *   FAULT_LOG_FILES  when set (non-empty), each log line ends with
 *                 " <file>", the path the call was made on, so a test
 *                 can check the order of writes and syncs across files
 *
 * Notes on the design: the path is looked up in /proc/self/fd at each
 * call (no open() tracking, so files opened before the library was
 * initialised, and dup'd descriptors, are handled alike).  The real
 * functions are found with dlsym (RTLD_NEXT).  Counting is one atomic
 * counter shared by the kinds selected, so N is the position of the
 * call among all selected kinds.  The powercut recorder
 * (tests/powercut/) is a different tool: it records, this one fails.
 */

/* No config.h: with _FILE_OFFSET_BITS=64 glibc would rename pwrite
 * and friends to their *64 variants, which this file defines too.
 */
#define _GNU_SOURCE
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fd-path.h"

enum kind { K_WRITE, K_SYNC, K_TRUNCATE, K_FALLOCATE, NR_KINDS };
static const char *const kind_name[NR_KINDS] = {
  "write", "sync", "truncate", "fallocate"
};

static const char *path_prefix;
static bool kind_on[NR_KINDS];
static unsigned long nth, times = 1;
static int fail_errno = EIO;
static const char *switch_file;
static bool kill_mode;
static bool log_files;
static const char *log_file;
static unsigned long counter;   /* atomic */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread bool busy;      /* inside this library (logging) */

__attribute__ ((constructor))
static void
init (void)
{
  const char *s;
  int k;

  path_prefix = getenv ("FAULT_PATH");
  if (path_prefix && *path_prefix == '\0')
    path_prefix = NULL;
  s = getenv ("FAULT_CALL");
  for (k = 0; k < NR_KINDS; ++k) {
    size_t n = strlen (kind_name[k]);
    const char *p = s;
    if (s == NULL || *s == '\0') {
      kind_on[k] = true;
      continue;
    }
    while (p && *p) {
      if (strncmp (p, kind_name[k], n) == 0 && (p[n] == ',' || !p[n]))
        kind_on[k] = true;
      p = strchr (p, ',');
      if (p)
        p++;
    }
  }
  if ((s = getenv ("FAULT_NTH")) != NULL)
    nth = strtoul (s, NULL, 10);
  if ((s = getenv ("FAULT_TIMES")) != NULL)
    times = strtoul (s, NULL, 10);
  if ((s = getenv ("FAULT_ERRNO")) != NULL) {
    if (strcmp (s, "EIO") == 0)
      fail_errno = EIO;
    else if (strcmp (s, "ENOSPC") == 0)
      fail_errno = ENOSPC;
    else
      fail_errno = atoi (s);
  }
  switch_file = getenv ("FAULT_SWITCH");
  kill_mode = (s = getenv ("FAULT_KILL")) != NULL && *s != '\0';
  log_files = (s = getenv ("FAULT_LOG_FILES")) != NULL && *s != '\0';
  log_file = getenv ("FAULT_LOG");
}

static bool
fd_matches (int fd)
{
  char target[PATH_MAX];

  return fd_path (fd, target, sizeof target) &&
    strncmp (target, path_prefix, strlen (path_prefix)) == 0;
}

/* The caller's stack as "module+0xoff<module+0xoff<...", without
 * this library's own frames.
 */
static void
site_of (char *buf, size_t len)
{
  void *frames[12];
  int n = backtrace (frames, 12), i;
  size_t used = 0;
  Dl_info self;

  buf[0] = '\0';
  if (!dladdr ((void *) site_of, &self))
    self.dli_fbase = NULL;
  for (i = 0; i < n && used + 1 < len; ++i) {
    Dl_info info;
    const char *mod = "?";
    uintptr_t off = (uintptr_t) frames[i];

    if (dladdr (frames[i], &info) && info.dli_fbase == self.dli_fbase)
      continue;                 /* this library's own frames */
    if (dladdr (frames[i], &info) && info.dli_fname) {
      mod = strrchr (info.dli_fname, '/');
      mod = mod ? mod + 1 : info.dli_fname;
      off -= (uintptr_t) info.dli_fbase;
    }
    used += snprintf (buf + used, len - used, "%s%s+0x%lx",
                      used ? "<" : "", mod, (unsigned long) off);
  }
}

static void
log_call (bool inject, enum kind k, unsigned long n, int fd)
{
  char site[512], file[PATH_MAX] = "";
  FILE *fp;
  int saved = errno;

  site_of (site, sizeof site);
  if (log_files && fd_path (fd, file + 1, sizeof file - 1))
    file[0] = ' ';
  pthread_mutex_lock (&log_lock);
  fp = fopen (log_file, "a");
  if (fp) {
    fprintf (fp, "%s%s %lu %s%s\n", inject ? "INJECT " : "", kind_name[k],
             n, site, file);
    fclose (fp);
  }
  pthread_mutex_unlock (&log_lock);
  errno = saved;
}

/* Should this call fail?  Counts it when it is one we watch. */
static bool
fail_this (enum kind k, int fd)
{
  unsigned long n;
  bool inject;
  int saved = errno;

  if (busy || path_prefix == NULL || !kind_on[k] || !fd_matches (fd)) {
    errno = saved;
    return false;
  }
  if (switch_file && access (switch_file, F_OK) == -1) {
    errno = saved;
    return false;
  }
  n = __atomic_add_fetch (&counter, 1, __ATOMIC_SEQ_CST);
  inject = nth != 0 && n >= nth && (times == 0 || n - nth < times);
  if (log_file) {
    busy = true;
    log_call (inject, k, n, fd);
    busy = false;
  }
  if (inject && kill_mode)
    raise (SIGKILL);
  errno = saved;
  return inject;
}

#define REAL(ret, name, args)                                   \
  static ret (*real_##name) args;                               \
  if (real_##name == NULL)                                      \
    real_##name = (ret (*) args) dlsym (RTLD_NEXT, #name)

#define FAIL_OR(k, fd)                                          \
  if (fail_this ((k), (fd))) {                                  \
    errno = fail_errno;                                         \
    return -1;                                                  \
  }

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  REAL (ssize_t, pwrite, (int, const void *, size_t, off_t));
  FAIL_OR (K_WRITE, fd);
  return real_pwrite (fd, buf, count, offset);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
  REAL (ssize_t, pwrite64, (int, const void *, size_t, off_t));
  FAIL_OR (K_WRITE, fd);
  return real_pwrite64 (fd, buf, count, offset);
}

ssize_t
pwritev (int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
  REAL (ssize_t, pwritev, (int, const struct iovec *, int, off_t));
  FAIL_OR (K_WRITE, fd);
  return real_pwritev (fd, iov, iovcnt, offset);
}

ssize_t
write (int fd, const void *buf, size_t count)
{
  REAL (ssize_t, write, (int, const void *, size_t));
  /* Sockets and pipes (the NBD connection, nbdkit's own) are never
   * under FAULT_PATH, so fd_matches rules them out.
   */
  FAIL_OR (K_WRITE, fd);
  return real_write (fd, buf, count);
}

int
fsync (int fd)
{
  REAL (int, fsync, (int));
  FAIL_OR (K_SYNC, fd);
  return real_fsync (fd);
}

int
fdatasync (int fd)
{
  REAL (int, fdatasync, (int));
  FAIL_OR (K_SYNC, fd);
  return real_fdatasync (fd);
}

int
sync_file_range (int fd, off_t offset, off_t nbytes, unsigned int flags)
{
  REAL (int, sync_file_range, (int, off_t, off_t, unsigned int));
  FAIL_OR (K_SYNC, fd);
  return real_sync_file_range (fd, offset, nbytes, flags);
}

int
ftruncate (int fd, off_t length)
{
  REAL (int, ftruncate, (int, off_t));
  FAIL_OR (K_TRUNCATE, fd);
  return real_ftruncate (fd, length);
}

int
ftruncate64 (int fd, off_t length)
{
  REAL (int, ftruncate64, (int, off_t));
  FAIL_OR (K_TRUNCATE, fd);
  return real_ftruncate64 (fd, length);
}

int
fallocate (int fd, int mode, off_t offset, off_t len)
{
  REAL (int, fallocate, (int, int, off_t, off_t));
  FAIL_OR (K_FALLOCATE, fd);
  return real_fallocate (fd, mode, offset, len);
}

int
fallocate64 (int fd, int mode, off_t offset, off_t len)
{
  REAL (int, fallocate64, (int, int, off_t, off_t));
  FAIL_OR (K_FALLOCATE, fd);
  return real_fallocate64 (fd, mode, offset, len);
}

int
posix_fallocate (int fd, off_t offset, off_t len)
{
  REAL (int, posix_fallocate, (int, off_t, off_t));
  /* posix_fallocate returns the error instead of setting errno. */
  if (fail_this (K_FALLOCATE, fd))
    return fail_errno;
  return real_posix_fallocate (fd, offset, len);
}
