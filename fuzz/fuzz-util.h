/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Helpers shared by the read-write fuzz targets: a PRNG seeded from
 * the fuzz input (so that the operations a target runs are a pure
 * function of its input, and libFuzzer and the replay driver
 * reproduce them), a private working directory, small file helpers,
 * and a failure report that names the invariant broken.
 */

#ifndef QAD_FUZZ_UTIL_H
#define QAD_FUZZ_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "full-io.h"

struct fuzz_rng {
  uint64_t s;
};

/* Seed from a hash of the input (FNV-1a), then splitmix64. */
static inline void
fuzz_rng_init (struct fuzz_rng *r, const uint8_t *data, size_t size)
{
  uint64_t h = UINT64_C (0xcbf29ce484222325);
  size_t i;

  for (i = 0; i < size; ++i)
    h = (h ^ data[i]) * UINT64_C (0x100000001b3);
  r->s = h ^ size;
}

static inline uint64_t
fuzz_next (struct fuzz_rng *r)
{
  uint64_t z = (r->s += UINT64_C (0x9e3779b97f4a7c15));

  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* Uniform in [0, n); 0 when n is 0. */
static inline uint64_t
fuzz_below (struct fuzz_rng *r, uint64_t n)
{
  return n ? fuzz_next (r) % n : 0;
}

static inline void
fuzz_fill (struct fuzz_rng *r, void *buf, size_t len)
{
  uint8_t *p = buf;
  size_t i;

  for (i = 0; i + 8 <= len; i += 8) {
    uint64_t v = fuzz_next (r);
    memcpy (p + i, &v, 8);
  }
  for (; i < len; ++i)
    p[i] = fuzz_next (r);
}

/* A range [*off, *off + *len) inside [0, size), size > 0: biased
 * towards cluster boundaries (CS a power of 2) and small lengths, with
 * the occasional long one.
 */
static inline void
fuzz_range (struct fuzz_rng *r, uint64_t size, uint64_t cs,
            uint64_t *off, uint64_t *len)
{
  uint64_t o = fuzz_below (r, size), l;

  switch (fuzz_below (r, 4)) {
  case 0: o &= ~(cs - 1); break;
  case 1: o = (o & ~(cs - 1)) + fuzz_below (r, 2) * (cs - 512); break;
  default: break;
  }
  if (o >= size)
    o = size - 1;
  switch (fuzz_below (r, 4)) {
  case 0: l = 1 + fuzz_below (r, 1024); break;
  case 1: l = cs * (1 + fuzz_below (r, 3)); break;
  case 2: l = 1 + fuzz_below (r, 4 * cs); break;
  default: l = 1 + fuzz_below (r, 256 * 1024); break;
  }
  if (l > size - o)
    l = size - o;
  *off = o;
  *len = l;
}

static inline uint64_t
fuzz_hash (const void *buf, size_t len)
{
  const uint8_t *p = buf;
  uint64_t h = UINT64_C (0xcbf29ce484222325);
  size_t i;

  for (i = 0; i < len; ++i)
    h = (h ^ p[i]) * UINT64_C (0x100000001b3);
  return h;
}

/* With FUZZ_TRACE set in the environment, targets describe each
 * operation on stderr (for reproducing a failure by hand).
 */
static inline void __attribute__ ((format (printf, 1, 2)))
fuzz_trace (const char *fs, ...)
{
  static int on = -1;
  va_list ap;

  if (on == -1)
    on = getenv ("FUZZ_TRACE") != NULL;
  if (!on)
    return;
  va_start (ap, fs);
  vfprintf (stderr, fs, ap);
  va_end (ap);
  fprintf (stderr, "\n");
}

/* An invariant does not hold: say which, and abort (libFuzzer and
 * the sanitizers then save the input).
 */
static inline void __attribute__ ((noreturn, format (printf, 1, 2)))
fuzz_fail (const char *fs, ...)
{
  va_list ap;

  fprintf (stderr, "fuzz: invariant broken: ");
  va_start (ap, fs);
  vfprintf (stderr, fs, ap);
  va_end (ap);
  fprintf (stderr, "\n");
  abort ();
}

/* A private directory for this process's files, removed at exit.
 * Under $TMPDIR, else /dev/shm when it exists, else /tmp.
 */
static char fuzz_dir_buf[256];

static inline void
fuzz_dir_cleanup (void)
{
  char cmd[300];

  if (fuzz_dir_buf[0] &&
      snprintf (cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_buf) <
      (int) sizeof cmd)
    (void) !system (cmd);
}

static inline const char *
fuzz_dir (void)
{
  const char *t;

  if (fuzz_dir_buf[0])
    return fuzz_dir_buf;
  t = getenv ("TMPDIR");
  if (t == NULL || *t == '\0')
    t = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf (fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/qad-fuzz.XXXXXX", t);
  if (mkdtemp (fuzz_dir_buf) == NULL) {
    perror ("mkdtemp");
    abort ();
  }
  atexit (fuzz_dir_cleanup);
  return fuzz_dir_buf;
}

/* DIR/NAME into BUF (PATH_MAX-sized is plenty). */
static inline const char *
fuzz_path (char *buf, size_t n, const char *name)
{
  snprintf (buf, n, "%s/%s", fuzz_dir (), name);
  return buf;
}

/* Replace the file PATH by LEN bytes of DATA. */
static inline void
fuzz_write_file (const char *path, const void *data, size_t len)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  if (fd == -1 || full_pwrite (fd, data, len, 0) == -1 || close (fd) == -1) {
    perror (path);
    abort ();
  }
}

#endif /* QAD_FUZZ_UTIL_H */
