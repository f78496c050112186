/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The power-cut recorder: an LD_PRELOAD library that logs what a server
 * does to the files under one directory, for pc-replay.c to build
 * crash states from.
 *
 *   POWERCUT_DIR=/path/to/dir POWERCUT_LOG=/path/to/log \
 *     LD_PRELOAD=.libs/powercut-recorder.so nbdkit ...
 *
 * Notes on the design
 *
 * Logged: every write (write, pwrite, pwrite64, pwritev, pwritev2 and
 * their 64 variants, writev) with its data; ftruncate; fallocate and
 * posix_fallocate; fsync, fdatasync, sync_file_range, syncfs, sync;
 * open/openat/creat (all variants, fortified ones too) and
 * mkstemp/mkostemp/mkstemps/mkostemps of files and
 * directories under POWERCUT_DIR, with their flags (O_CREAT, O_TRUNC,
 * O_SYNC, O_DSYNC, O_DIRECT are in them; an open that creates a file
 * or truncates it is marked); rename/renameat/renameat2, link/linkat,
 * unlink/unlinkat of names under it.  strace shows that nbdkit's file
 * plugin uses openat(-1, ...), pwrite64, fallocate (punch hole) and
 * fdatasync; our objects use pwrite64, ftruncate, fdatasync, fsync,
 * link and unlink; qemu-nbd uses pwritev.
 *
 * Calls on descriptors the recorder does not track (sockets, pipes,
 * nbdkit's pidfile, the log itself) go straight to the C library
 * after one table lookup.  A descriptor is tracked from a successful
 * open whose resolved path (/proc/self/fd) is under the directory,
 * until close.  dup'ed descriptors are not followed (no server we test
 * writes through one).
 *
 * Fault injection (to prove that the checker catches a server that
 * passes writes down before its metadata is durable):
 * POWERCUT_LOSE_FDATASYNC=TEXT makes fdatasync on files whose name
 * contains TEXT (at open) succeed without being logged, so the crash
 * states treat what it was meant to make durable as not synced (fsync
 * is still logged); POWERCUT_LOSE_DIRSYNC=1 does the same to every
 * fsync of a directory (so creations and renames stay optional).
 *
 * Thread safety: one mutex protects the descriptor table, the inode
 * numbering, the sequence counter and the log file.  A data record is
 * appended after the real call returned and before this wrapper
 * returns, so its sequence number is taken atomically with respect to
 * every other record: see pc-log.h for the ordering argument.  errno
 * is preserved across the logging.
 */

#define _GNU_SOURCE 1

#include <config.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fd-path.h"
#include "pc-log.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 1
#endif

#define MAX_FDS 65536
#define MAX_INODES 1024

struct fdinfo {
  uint32_t file;                /* 0: not tracked */
  bool dir;
  uint32_t wflags;              /* PC_WRITE_* for writes through it */
  bool lose_fdatasync;          /* see POWERCUT_LOSE_FDATASYNC */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool active;
static char watch[PATH_MAX];    /* resolved POWERCUT_DIR */
static size_t watch_len;
static int log_fd = -1;
static const char *lose_fdatasync;  /* POWERCUT_LOSE_FDATASYNC */
static bool lose_dirsync;           /* POWERCUT_LOSE_DIRSYNC */
static uint64_t seq;
static struct fdinfo fds[MAX_FDS];
static struct { dev_t dev; ino_t ino; } inodes[MAX_INODES];
static uint32_t nr_inodes;

/* The real functions. */
static int (*real_open) (const char *, int, ...);
static int (*real_openat) (int, const char *, int, ...);
static ssize_t (*real_write) (int, const void *, size_t);
static ssize_t (*real_writev) (int, const struct iovec *, int);
static ssize_t (*real_pwrite64) (int, const void *, size_t, off_t);
static ssize_t (*real_pwritev) (int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2) (int, const struct iovec *, int, off_t, int);
static int (*real_ftruncate) (int, off_t);
static int (*real_fallocate) (int, int, off_t, off_t);
static int (*real_posix_fallocate) (int, off_t, off_t);
static int (*real_fsync) (int);
static int (*real_fdatasync) (int);
static int (*real_sync_file_range) (int, off_t, off_t, unsigned);
static int (*real_syncfs) (int);
static void (*real_sync) (void);
static int (*real_renameat2) (int, const char *, int, const char *,
                              unsigned);
static int (*real_renameat) (int, const char *, int, const char *);
static int (*real_linkat) (int, const char *, int, const char *, int);
static int (*real_unlinkat) (int, const char *, int);
static int (*real_close) (int);

#define RESOLVE(name) \
  real_##name = (__typeof__ (real_##name)) dlsym (RTLD_NEXT, #name)

static void
resolve_all (void)
{
  RESOLVE (open); RESOLVE (openat); RESOLVE (write); RESOLVE (writev);
  RESOLVE (pwrite64); RESOLVE (pwritev); RESOLVE (pwritev2);
  RESOLVE (ftruncate); RESOLVE (fallocate); RESOLVE (posix_fallocate);
  RESOLVE (fsync); RESOLVE (fdatasync); RESOLVE (sync_file_range);
  RESOLVE (syncfs); RESOLVE (sync); RESOLVE (renameat2);
  RESOLVE (renameat); RESOLVE (linkat); RESOLVE (unlinkat);
  RESOLVE (close);
}

/* Another library's constructor may call us before ours ran. */
#define REAL(name) (real_##name ? real_##name : (resolve_all (), real_##name))

__attribute__ ((constructor))
static void
recorder_init (void)
{
  resolve_all ();
  const char *dir = getenv ("POWERCUT_DIR");
  const char *log = getenv ("POWERCUT_LOG");

  if (dir == NULL || log == NULL)
    return;
  if (realpath (dir, watch) == NULL) {
    fprintf (stderr, "powercut-recorder: %s: %m\n", dir);
    return;
  }
  watch_len = strlen (watch);
  lose_fdatasync = getenv ("POWERCUT_LOSE_FDATASYNC");
  lose_dirsync = getenv ("POWERCUT_LOSE_DIRSYNC") != NULL;
  log_fd = REAL (open) (log, O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0644);
  if (log_fd == -1) {
    fprintf (stderr, "powercut-recorder: %s: %m\n", log);
    return;
  }
  active = true;
}

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Is the absolute, resolved PATH under the watched directory?  Returns
 * the path relative to it ("." for the directory itself), or NULL.
 */
static const char *
relative (const char *path)
{
  if (strncmp (path, watch, watch_len) != 0)
    return NULL;
  if (path[watch_len] == '\0')
    return ".";
  if (path[watch_len] != '/')
    return NULL;
  return path + watch_len + 1;
}

/* Resolve a name given to a path-based call (rename, link, unlink):
 * its directory is resolved, the last component is kept as is.
 */
static bool
resolve_name (int dirfd, const char *name, char *out)
{
  char tmp[2 * PATH_MAX + 2], dirpath[PATH_MAX];
  char *slash;
  const char *base;

  if (name[0] == '/')
    snprintf (tmp, sizeof tmp, "%s", name);
  else if (dirfd == AT_FDCWD) {
    if (getcwd (dirpath, sizeof dirpath) == NULL)
      return false;
    snprintf (tmp, sizeof tmp, "%s/%s", dirpath, name);
  }
  else {
    if (!fd_path (dirfd, dirpath, sizeof dirpath))
      return false;
    snprintf (tmp, sizeof tmp, "%s/%s", dirpath, name);
  }
  slash = strrchr (tmp, '/');
  base = slash + 1;
  if (slash == tmp)
    strcpy (dirpath, "/");
  else {
    *slash = '\0';
    if (realpath (tmp, dirpath) == NULL)
      return false;
  }
  return snprintf (out, PATH_MAX, "%s/%s", dirpath, base) < PATH_MAX;
}

/* Append one record.  Call with the lock held. */
static void
append (struct pc_rec *r, const char *name, const char *name2,
        const struct iovec *iov, int iovcnt, uint64_t data_len)
{
  struct iovec v[4 + 1024];
  int n = 0, i;
  uint64_t left = data_len;

  r->magic = PC_LOG_MAGIC;
  r->seq = ++seq;
  r->ts_ns = now_ns ();
  r->name_len = name ? strlen (name) : 0;
  r->name2_len = name2 ? strlen (name2) : 0;
  r->data_len = data_len;
  v[n].iov_base = r; v[n++].iov_len = sizeof *r;
  if (name) { v[n].iov_base = (void *) name; v[n++].iov_len = r->name_len; }
  if (name2) { v[n].iov_base = (void *) name2; v[n++].iov_len = r->name2_len; }
  for (i = 0; i < iovcnt && left > 0 && n < 4 + 1024; ++i) {
    size_t l = iov[i].iov_len < left ? iov[i].iov_len : left;
    v[n].iov_base = iov[i].iov_base; v[n++].iov_len = l;
    left -= l;
  }
  /* writev may write less than asked: finish with plain writes. */
  {
    ssize_t w = REAL (writev) (log_fd, v, n);
    size_t total = 0;
    for (i = 0; i < n; ++i)
      total += v[i].iov_len;
    if (w < 0 || (size_t) w != total) {
      size_t done = w < 0 ? 0 : w;
      for (i = 0; i < n; ++i) {
        const char *p = v[i].iov_base;
        size_t l = v[i].iov_len;
        if (done >= l) { done -= l; continue; }
        p += done; l -= done; done = 0;
        while (l > 0) {
          ssize_t k = REAL (write) (log_fd, p, l);
          if (k <= 0) {
            if (k < 0 && errno == EINTR) continue;
            fprintf (stderr, "powercut-recorder: log write: %m\n");
            abort ();
          }
          p += k; l -= k;
        }
      }
    }
  }
}

static uint32_t
inode_number (const struct stat *st)
{
  uint32_t i;
  for (i = 0; i < nr_inodes; ++i)
    if (inodes[i].dev == st->st_dev && inodes[i].ino == st->st_ino)
      return i + 1;
  if (nr_inodes == MAX_INODES) {
    fprintf (stderr, "powercut-recorder: too many files\n");
    abort ();
  }
  inodes[nr_inodes].dev = st->st_dev;
  inodes[nr_inodes].ino = st->st_ino;
  return ++nr_inodes;
}

static uint32_t
tracked (int fd)
{
  if (!active || fd < 0 || fd >= MAX_FDS)
    return 0;
  return __atomic_load_n (&fds[fd].file, __ATOMIC_ACQUIRE);
}

/* After a successful open: track FD if it is under the directory. */
static void
opened (int fd, int flags, bool existed)
{
  char path[PATH_MAX];
  const char *rel;
  struct stat st;
  struct pc_rec rec = { .type = PC_OPEN };
  int saved = errno;

  if (!active || fd < 0 || fd >= MAX_FDS)
    return;
  if (!fd_path (fd, path, sizeof path))
    goto out;
  rel = relative (path);
  if (rel == NULL || fstat (fd, &st) == -1 ||
      !(S_ISREG (st.st_mode) || S_ISDIR (st.st_mode)))
    goto out;

  pthread_mutex_lock (&lock);
  fds[fd].dir = S_ISDIR (st.st_mode);
  fds[fd].wflags = 0;
  fds[fd].lose_fdatasync = lose_fdatasync && strstr (rel, lose_fdatasync);
  if (flags & (O_SYNC|O_DSYNC))
    fds[fd].wflags |= PC_WRITE_DSYNC;
#ifdef O_DIRECT
  if (flags & O_DIRECT)
    fds[fd].wflags |= PC_WRITE_DIRECT;
#endif
  rec.file = inode_number (&st);
  rec.flags = flags | (existed ? 0 : PC_OPEN_CREATED);
  rec.ret = fd;
  rec.off = st.st_size;
  append (&rec, rel, NULL, NULL, 0, 0);
  __atomic_store_n (&fds[fd].file, rec.file, __ATOMIC_RELEASE);
  pthread_mutex_unlock (&lock);
 out:
  errno = saved;
}

/* Does the name exist (before an O_CREAT open)? */
static bool
exists_at (int dirfd, const char *path)
{
  struct stat st;
  int saved = errno;
  bool r = fstatat (dirfd, path, &st, 0) == 0;
  errno = saved;
  return r;
}

static int
do_openat (int dirfd, const char *path, int flags, mode_t mode)
{
  bool existed = true;
  int fd;

  if (active && (flags & O_CREAT))
    existed = exists_at (dirfd, path);
  fd = REAL (openat) (dirfd, path, flags, mode);
  if (fd >= 0)
    opened (fd, flags, existed);
  return fd;
}

static mode_t
get_mode (int flags, va_list ap)
{
  if (flags & (O_CREAT
#ifdef O_TMPFILE
               | O_TMPFILE
#endif
               ))
    return va_arg (ap, mode_t);
  return 0;
}

/* The open wrappers take the mode only when the flags say it is there. */
#define OPEN_VARIADIC(dirfd, path, flags)               \
  do {                                                  \
    va_list ap_;                                        \
    mode_t mode_;                                       \
    va_start (ap_, flags);                              \
    mode_ = get_mode (flags, ap_);                      \
    va_end (ap_);                                       \
    return do_openat (dirfd, path, flags, mode_);       \
  } while (0)

int
open (const char *path, int flags, ...)
{
  OPEN_VARIADIC (AT_FDCWD, path, flags);
}

int
open64 (const char *path, int flags, ...)
{
  OPEN_VARIADIC (AT_FDCWD, path, flags);
}

int
openat (int dirfd, const char *path, int flags, ...)
{
  OPEN_VARIADIC (dirfd, path, flags);
}

int
openat64 (int dirfd, const char *path, int flags, ...)
{
  OPEN_VARIADIC (dirfd, path, flags);
}

int __open_2 (const char *path, int flags);
int __open64_2 (const char *path, int flags);
int __openat_2 (int dirfd, const char *path, int flags);
int __openat64_2 (int dirfd, const char *path, int flags);

int
__open_2 (const char *path, int flags)
{
  return do_openat (AT_FDCWD, path, flags, 0);
}

int
__open64_2 (const char *path, int flags)
{
  return do_openat (AT_FDCWD, path, flags, 0);
}

int
__openat_2 (int dirfd, const char *path, int flags)
{
  return do_openat (dirfd, path, flags, 0);
}

int
__openat64_2 (int dirfd, const char *path, int flags)
{
  return do_openat (dirfd, path, flags, 0);
}

int
creat (const char *path, mode_t mode)
{
  return do_openat (AT_FDCWD, path, O_CREAT|O_WRONLY|O_TRUNC, mode);
}

int
creat64 (const char *path, mode_t mode)
{
  return do_openat (AT_FDCWD, path, O_CREAT|O_WRONLY|O_TRUNC, mode);
}

/* mkstemp and friends open inside the C library (no interposable
 * open): track the descriptor they return.  add-cow creates its
 * sidecar that way (a temporary file, then link).
 */
static int (*real_mkostemps) (char *, int, int);

int
mkostemps (char *template, int suffixlen, int flags)
{
  int fd;

  if (real_mkostemps == NULL)
    real_mkostemps = (__typeof__ (real_mkostemps))
      dlsym (RTLD_NEXT, "mkostemps");
  fd = real_mkostemps (template, suffixlen, flags);
  if (fd >= 0)
    opened (fd, flags | O_CREAT | O_EXCL | O_RDWR, false);
  return fd;
}

int
mkstemp (char *template)
{
  return mkostemps (template, 0, 0);
}

int
mkostemp (char *template, int flags)
{
  return mkostemps (template, 0, flags);
}

int
mkstemps (char *template, int suffixlen)
{
  return mkostemps (template, suffixlen, 0);
}

int
mkstemp64 (char *template)
{
  return mkostemps (template, 0, 0);
}

int
mkostemp64 (char *template, int flags)
{
  return mkostemps (template, 0, flags);
}

int
close (int fd)
{
  if (tracked (fd)) {
    pthread_mutex_lock (&lock);
    __atomic_store_n (&fds[fd].file, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock (&lock);
  }
  return REAL (close) (fd);
}

/* Log a completed write of RET bytes at OFF through FD. */
static void
logged_write (int fd, uint32_t file, const struct iovec *iov, int iovcnt,
              ssize_t ret, uint64_t off, uint32_t extra_flags)
{
  struct pc_rec rec = { .type = PC_WRITE };
  int saved = errno;

  if (ret <= 0)
    return;
  pthread_mutex_lock (&lock);
  rec.file = file;
  rec.off = off;
  rec.len = ret;
  rec.ret = ret;
  rec.flags = fds[fd].wflags | extra_flags;
  append (&rec, NULL, NULL, iov, iovcnt, ret);
  pthread_mutex_unlock (&lock);
  errno = saved;
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t off)
{
  uint32_t file = tracked (fd);
  ssize_t r = REAL (pwrite64) (fd, buf, count, off);
  if (file) {
    struct iovec v = { .iov_base = (void *) buf, .iov_len = count };
    logged_write (fd, file, &v, 1, r, off, 0);
  }
  return r;
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t off)
{
  return pwrite64 (fd, buf, count, off);
}

ssize_t
pwritev2 (int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
  uint32_t file = tracked (fd);
  uint32_t extra = 0;
  ssize_t r;

#ifdef RWF_DSYNC
  if (flags & (RWF_DSYNC
#ifdef RWF_SYNC
               | RWF_SYNC
#endif
               ))
    extra |= PC_WRITE_DSYNC;
#endif
  if (off == -1) {
    /* Current file position: as write. */
    off_t pos = file ? lseek (fd, 0, SEEK_CUR) : 0;
    r = REAL (pwritev2) (fd, iov, iovcnt, off, flags);
    if (file)
      logged_write (fd, file, iov, iovcnt, r, pos, extra);
    return r;
  }
  r = REAL (pwritev2) (fd, iov, iovcnt, off, flags);
  if (file)
    logged_write (fd, file, iov, iovcnt, r, off, extra);
  return r;
}

ssize_t
pwritev64v2 (int fd, const struct iovec *iov, int iovcnt, off_t off,
             int flags)
{
  return pwritev2 (fd, iov, iovcnt, off, flags);
}

ssize_t
pwritev (int fd, const struct iovec *iov, int iovcnt, off_t off)
{
  uint32_t file = tracked (fd);
  ssize_t r = REAL (pwritev) (fd, iov, iovcnt, off);
  if (file)
    logged_write (fd, file, iov, iovcnt, r, off, 0);
  return r;
}

ssize_t
pwritev64 (int fd, const struct iovec *iov, int iovcnt, off_t off)
{
  return pwritev (fd, iov, iovcnt, off);
}

/* write and writev: the offset is the position after the call minus
 * what was written (right for O_APPEND too).
 */
ssize_t
writev (int fd, const struct iovec *iov, int iovcnt)
{
  uint32_t file = tracked (fd);
  ssize_t r = REAL (writev) (fd, iov, iovcnt);
  if (file && r > 0) {
    int saved = errno;
    off_t end = lseek (fd, 0, SEEK_CUR);
    errno = saved;
    logged_write (fd, file, iov, iovcnt, r, end - r, 0);
  }
  return r;
}

ssize_t
write (int fd, const void *buf, size_t count)
{
  struct iovec v = { .iov_base = (void *) buf, .iov_len = count };
  if (!tracked (fd))
    return REAL (write) (fd, buf, count);
  return writev (fd, &v, 1);
}

static void
logged_simple (int fd, uint32_t file, uint16_t type, int ret,
               uint32_t flags, uint64_t off, uint64_t len)
{
  struct pc_rec rec = { .type = type };
  int saved = errno;

  if (ret != 0)
    return;
  pthread_mutex_lock (&lock);
  rec.file = file;
  rec.flags = flags;
  rec.off = off;
  rec.len = len;
  append (&rec, NULL, NULL, NULL, 0, 0);
  pthread_mutex_unlock (&lock);
  errno = saved;
}

int
ftruncate64 (int fd, off_t length)
{
  uint32_t file = tracked (fd);
  int r = REAL (ftruncate) (fd, length);
  if (file)
    logged_simple (fd, file, PC_TRUNCATE, r, 0, length, 0);
  return r;
}

int
ftruncate (int fd, off_t length)
{
  return ftruncate64 (fd, length);
}

int
fallocate64 (int fd, int mode, off_t off, off_t len)
{
  uint32_t file = tracked (fd);
  int r = REAL (fallocate) (fd, mode, off, len);
  if (file)
    logged_simple (fd, file, PC_FALLOCATE, r, mode, off, len);
  return r;
}

int
fallocate (int fd, int mode, off_t off, off_t len)
{
  return fallocate64 (fd, mode, off, len);
}

int
posix_fallocate64 (int fd, off_t off, off_t len)
{
  uint32_t file = tracked (fd);
  int r = REAL (posix_fallocate) (fd, off, len);
  if (file)
    logged_simple (fd, file, PC_FALLOCATE, r, 0, off, len);
  return r;
}

int
posix_fallocate (int fd, off_t off, off_t len)
{
  return posix_fallocate64 (fd, off, len);
}

/* A sync: SYNC_START before the call, SYNC_END after it. */
static uint64_t
sync_start (uint32_t file, uint32_t kind, uint64_t off, uint64_t len)
{
  struct pc_rec rec = { .type = PC_SYNC_START };
  uint64_t s;

  pthread_mutex_lock (&lock);
  rec.file = file;
  rec.flags = kind;
  rec.off = off;
  rec.len = len;
  append (&rec, NULL, NULL, NULL, 0, 0);
  s = rec.seq;
  pthread_mutex_unlock (&lock);
  return s;
}

static void
sync_end (uint32_t file, uint32_t kind, uint64_t start, int ret, int err)
{
  struct pc_rec rec = { .type = PC_SYNC_END };

  pthread_mutex_lock (&lock);
  rec.file = file;
  rec.flags = kind;
  rec.start_seq = start;
  rec.ret = ret == 0 ? 0 : -err;
  append (&rec, NULL, NULL, NULL, 0, 0);
  pthread_mutex_unlock (&lock);
  errno = err;
}

static uint32_t
sync_kind (int fd, uint32_t kind)
{
  return kind | (fds[fd].dir ? PC_SYNC_DIR : 0);
}

/* fsync and fdatasync: FN is the real one. */
static int
logged_sync (int fd, int (*fn) (int), uint32_t kind)
{
  uint32_t file = tracked (fd);
  uint64_t s;
  int r;

  if (!file)
    return fn (fd);
  kind = sync_kind (fd, kind);
  s = sync_start (file, kind, 0, 0);
  r = fn (fd);
  sync_end (file, kind, s, r, errno);
  return r;
}

int
fsync (int fd)
{
  if (tracked (fd) && fds[fd].dir && lose_dirsync)
    return REAL (fsync) (fd);
  return logged_sync (fd, REAL (fsync), PC_SYNC_FSYNC);
}

int
fdatasync (int fd)
{
  if (tracked (fd) && fds[fd].lose_fdatasync)
    return REAL (fdatasync) (fd);
  return logged_sync (fd, REAL (fdatasync), PC_SYNC_FDATASYNC);
}

int
sync_file_range (int fd, off_t off, off_t len, unsigned flags)
{
  uint32_t file = tracked (fd);
  uint64_t s;
  int r;

  if (!file)
    return REAL (sync_file_range) (fd, off, len, flags);
  s = sync_start (file, PC_SYNC_RANGE, off, len);
  r = REAL (sync_file_range) (fd, off, len, flags);
  sync_end (file, PC_SYNC_RANGE, s, r, errno);
  return r;
}

int
syncfs (int fd)
{
  uint64_t s;
  int r;

  if (!active)
    return REAL (syncfs) (fd);
  s = sync_start (0, PC_SYNC_ALL, 0, 0);
  r = REAL (syncfs) (fd);
  sync_end (0, PC_SYNC_ALL, s, r, errno);
  return r;
}

void
sync (void)
{
  uint64_t s;

  if (!active) {
    REAL (sync) ();
    return;
  }
  s = sync_start (0, PC_SYNC_ALL, 0, 0);
  REAL (sync) ();
  sync_end (0, PC_SYNC_ALL, s, 0, 0);
}

/* Namespace operations: logged when a name is under the directory. */
static void
logged_names (uint16_t type, int ret, int dirfd1, const char *name1,
              int dirfd2, const char *name2)
{
  char p1[PATH_MAX], p2[PATH_MAX];
  const char *r1, *r2 = NULL;
  struct pc_rec rec = { .type = type };
  int saved = errno;

  if (!active || ret != 0)
    return;
  if (!resolve_name (dirfd1, name1, p1))
    goto out;
  r1 = relative (p1);
  if (name2) {
    if (!resolve_name (dirfd2, name2, p2))
      goto out;
    r2 = relative (p2);
  }
  if (r1 == NULL && r2 == NULL)
    goto out;
  if (r1 == NULL || (name2 && r2 == NULL)) {
    /* A name moved into or out of the watched directory: the model
     * cannot follow it.  Say so; the generator refuses such logs.
     */
    fprintf (stderr, "powercut-recorder: %s crosses the watched "
             "directory: %s\n", type == PC_RENAME ? "rename" : "link",
             r1 ? p2 : p1);
    r1 = r1 ? r1 : "/outside";
    r2 = r2 ? r2 : "/outside";
  }
  pthread_mutex_lock (&lock);
  append (&rec, r1, r2, NULL, 0, 0);
  pthread_mutex_unlock (&lock);
 out:
  errno = saved;
}

int
renameat2 (int olddirfd, const char *oldpath, int newdirfd,
           const char *newpath, unsigned flags)
{
  int r = REAL (renameat2) (olddirfd, oldpath, newdirfd, newpath, flags);
  logged_names (PC_RENAME, r, olddirfd, oldpath, newdirfd, newpath);
  return r;
}

int
renameat (int olddirfd, const char *oldpath, int newdirfd,
          const char *newpath)
{
  int r = REAL (renameat) (olddirfd, oldpath, newdirfd, newpath);
  logged_names (PC_RENAME, r, olddirfd, oldpath, newdirfd, newpath);
  return r;
}

int
rename (const char *oldpath, const char *newpath)
{
  return renameat (AT_FDCWD, oldpath, AT_FDCWD, newpath);
}

int
linkat (int olddirfd, const char *oldpath, int newdirfd,
        const char *newpath, int flags)
{
  int r = REAL (linkat) (olddirfd, oldpath, newdirfd, newpath, flags);
  logged_names (PC_LINK, r, olddirfd, oldpath, newdirfd, newpath);
  return r;
}

int
link (const char *oldpath, const char *newpath)
{
  return linkat (AT_FDCWD, oldpath, AT_FDCWD, newpath, 0);
}

int
unlinkat (int dirfd, const char *path, int flags)
{
  char p[PATH_MAX];
  int r;

  /* Resolve before the name goes away. */
  if (active && !resolve_name (dirfd, path, p))
    p[0] = '\0';
  r = REAL (unlinkat) (dirfd, path, flags);
  if (active && r == 0 && p[0])
    logged_names (PC_UNLINK, 0, AT_FDCWD, p, -1, NULL);
  return r;
}

int
unlink (const char *path)
{
  return unlinkat (AT_FDCWD, path, 0);
}
