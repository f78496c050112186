/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Copy-before-write for a frozen bitmap (qdb-freeze.h).
 *
 * Notes on the design.  Two bit arrays, one bit per granule: "copied"
 * (the scratch file holds the granule as of the freeze) and "copying"
 * (a writer is copying it now).  A writer claims a granule by setting
 * its copying bit (waiting while another writer holds it), copies it
 * with no lock held, then sets its copied bit and only then lets its
 * own write through.  The view must never read a granule from the disk
 * after the write that follows its copy: a reader holds VIEW_LOCK
 * (shared) from the moment it looks at the copied bits until its disk
 * reads return, and a writer takes VIEW_LOCK exclusively to set a
 * copied bit.  So either the reader saw "not copied" and the write
 * waits until the reader is done, or it saw "copied" and reads the
 * scratch file.
 *
 * Granules are processed in ascending order and a writer never holds a
 * claim while waiting for another, so claims cannot deadlock.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "qad-error.h"
#include "qdb-freeze.h"
#include "qdb-scratch.h"

#define COPY_CHUNK (UINT64_C (4) << 20)

struct qdb_freeze {
  char *name;
  uint64_t granularity, disk_size, nr_granules;
  int fd;                       /* scratch file, nameless */
  /* lock protects copied, copying and copied_bytes. */
  pthread_mutex_t lock;
  pthread_cond_t done;          /* a copying bit was cleared */
  uint8_t *copied, *copying;
  uint64_t copied_bytes;
  /* See the notes above. */
  pthread_rwlock_t view_lock;
};

struct qdb_freeze *
qdb_freeze_new (const char *dir, const char *qdb_path, const char *name,
                uint64_t granularity, uint64_t disk_size)
{
  struct qdb_freeze *fz;
  size_t bytes;

  fz = calloc (1, sizeof *fz);
  if (!fz) {
    qad_error ("calloc: %m");
    return NULL;
  }
  fz->fd = -1;
  fz->granularity = granularity;
  fz->disk_size = disk_size;
  fz->nr_granules = disk_size / granularity + (disk_size % granularity != 0);
  bytes = fz->nr_granules / 8 + 1;
  fz->name = strdup (name);
  fz->copied = calloc (bytes, 1);
  fz->copying = calloc (bytes, 1);
  if (!fz->name || !fz->copied || !fz->copying) {
    qad_error ("calloc: %m");
    goto err;
  }
  fz->fd = qdb_scratch_open (dir, qdb_path, true);
  if (fz->fd == -1) {
    qad_error ("%s: creating the scratch file for frozen bitmap \"%s\" of "
               "%s: %m", dir, name, qdb_path);
    goto err;
  }
  pthread_mutex_init (&fz->lock, NULL);
  pthread_cond_init (&fz->done, NULL);
  pthread_rwlock_init (&fz->view_lock, NULL);
  return fz;

 err:
  if (fz->fd >= 0)
    close (fz->fd);
  free (fz->name);
  free (fz->copied);
  free (fz->copying);
  free (fz);
  return NULL;
}

void
qdb_freeze_free (struct qdb_freeze *fz)
{
  if (!fz)
    return;
  close (fz->fd);
  pthread_mutex_destroy (&fz->lock);
  pthread_cond_destroy (&fz->done);
  pthread_rwlock_destroy (&fz->view_lock);
  free (fz->name);
  free (fz->copied);
  free (fz->copying);
  free (fz);
}

const char *
qdb_freeze_name (const struct qdb_freeze *fz)
{
  return fz->name;
}

uint64_t
qdb_freeze_copied_bytes (struct qdb_freeze *fz)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&fz->lock);
  return fz->copied_bytes;
}

/* Copy granule G from the disk to the scratch file. */
static int
copy_granule (struct qdb_freeze *fz, uint64_t g, qdb_disk_read read,
              void *opaque, int *err)
{
  const uint64_t start = g * fz->granularity;
  const uint64_t end = MIN (start + fz->granularity, fz->disk_size);
  CLEANUP_FREE uint8_t *buf = malloc (MIN (end - start, COPY_CHUNK));
  uint64_t off;

  if (!buf) {
    *err = errno;
    qad_error ("malloc: %m");
    return -1;
  }
  for (off = start; off < end; off += COPY_CHUNK) {
    uint32_t n = MIN (end - off, COPY_CHUNK);
    if (read (opaque, buf, n, off, err) == -1)
      return -1;
    if (full_pwrite (fz->fd, buf, n, off) == -1) {
      *err = errno;
      qad_error ("frozen bitmap \"%s\": writing the scratch file at offset "
                 "%" PRIu64 ": %m", fz->name, off);
      return -1;
    }
  }
  return 0;
}

int
qdb_freeze_before_write (struct qdb_freeze *fz, uint64_t offset,
                         uint64_t count, qdb_disk_read read, void *opaque,
                         int *err)
{
  uint64_t g, first, last;

  if (count == 0 || offset >= fz->disk_size)
    return 0;
  first = offset / fz->granularity;
  last = (MIN (offset + count, fz->disk_size) - 1) / fz->granularity;
  for (g = first; g <= last; ++g) {
    int r;

    pthread_mutex_lock (&fz->lock);
    while (bit_test (fz->copying, g))
      pthread_cond_wait (&fz->done, &fz->lock);
    if (bit_test (fz->copied, g)) {
      pthread_mutex_unlock (&fz->lock);
      continue;
    }
    bit_set (fz->copying, g);
    pthread_mutex_unlock (&fz->lock);

    r = copy_granule (fz, g, read, opaque, err);

    if (r == 0)
      pthread_rwlock_wrlock (&fz->view_lock);
    pthread_mutex_lock (&fz->lock);
    bit_clear (fz->copying, g);
    if (r == 0) {
      bit_set (fz->copied, g);
      fz->copied_bytes += MIN (fz->granularity,
                               fz->disk_size - g * fz->granularity);
    }
    pthread_cond_broadcast (&fz->done);
    pthread_mutex_unlock (&fz->lock);
    if (r == 0)
      pthread_rwlock_unlock (&fz->view_lock);
    else
      return -1;
  }
  return 0;
}

int
qdb_freeze_read (struct qdb_freeze *fz, void *buf, uint32_t count,
                 uint64_t offset, qdb_disk_read read, void *opaque,
                 int *err)
{
  uint8_t *p = buf;
  const uint64_t end = offset + count;
  int r = 0;

  pthread_rwlock_rdlock (&fz->view_lock);
  while (offset < end && r == 0) {
    uint64_t g = offset / fz->granularity;
    uint64_t run_end = MIN ((g + 1) * fz->granularity, end);
    bool copied;

    /* Extend the run over following granules in the same state. */
    pthread_mutex_lock (&fz->lock);
    copied = bit_test (fz->copied, g);
    while (run_end < end && g + 1 < fz->nr_granules &&
           bit_test (fz->copied, g + 1) == copied) {
      g++;
      run_end = MIN ((g + 1) * fz->granularity, end);
    }
    pthread_mutex_unlock (&fz->lock);

    if (!copied)
      r = read (opaque, p, run_end - offset, offset, err);
    else if (full_pread (fz->fd, p, run_end - offset, offset) == -1) {
      *err = errno;
      qad_error ("frozen bitmap \"%s\": reading the scratch file at offset "
                 "%" PRIu64 ": %m", fz->name, offset);
      r = -1;
    }
    p += run_end - offset;
    offset = run_end;
  }
  pthread_rwlock_unlock (&fz->view_lock);
  return r;
}

void
qdb_freeze_hold (struct qdb_freeze *fz)
{
  pthread_rwlock_rdlock (&fz->view_lock);
}

void
qdb_freeze_unhold (struct qdb_freeze *fz)
{
  pthread_rwlock_unlock (&fz->view_lock);
}

bool
qdb_freeze_is_copied (struct qdb_freeze *fz, uint64_t offset)
{
  uint64_t g = offset / fz->granularity;

  if (g >= fz->nr_granules)
    return false;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&fz->lock);
  return bit_test (fz->copied, g);
}

int
qdb_freeze_copy_is_zero (struct qdb_freeze *fz, uint64_t offset,
                         uint64_t count, int *err)
{
  CLEANUP_FREE uint8_t *buf = NULL;
  const uint64_t end = offset + count;

  if (count == 0)
    return 1;
  buf = malloc (MIN (count, COPY_CHUNK));
  if (!buf) {
    *err = errno;
    qad_error ("malloc: %m");
    return -1;
  }
  while (offset < end) {
    size_t n = MIN (end - offset, COPY_CHUNK);

    if (full_pread (fz->fd, buf, n, offset) == -1) {
      *err = errno;
      qad_error ("frozen bitmap \"%s\": reading the scratch file at offset "
                 "%" PRIu64 ": %m", fz->name, offset);
      return -1;
    }
    if (buf[0] != 0 || memcmp (buf, buf + 1, n - 1) != 0)
      return 0;
    offset += n;
  }
  return 1;
}
