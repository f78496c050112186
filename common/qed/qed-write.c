/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * Allocation.  New data clusters and L2 tables are appended at
 * img->file_end, reserved under img->lock and written with no lock
 * held.  A guest cluster whose L2 entry is about to change (allocation,
 * zero cluster) is covered by a range lock (img->changing, see
 * common/utils/rangelock.h): the writer takes the range,
 * looks the cluster up again, and only then allocates, so two writers
 * never both allocate the same cluster and nothing leaks.  Writes into
 * clusters that are already allocated go straight to the file with no
 * lock at all.  New L2 tables are serialised by l2_alloc_lock (rare).
 *
 * Crash consistency, following QED's rules:
 * - Without a backing file, NEED_CHECK is set and made durable before
 *   the first allocation after a flush.  A crash can then leave only
 *   leaked clusters or entries past the end of the file, which the
 *   check on the next read-write open repairs.
 * - With a backing file, the data of a new cluster (and a new L2
 *   table) is made durable before the entry pointing at it is written,
 *   so an entry never points at a cluster that lost its backing data.
 * - flush clears NEED_CHECK only when no allocation is in flight and
 *   none completed since the fdatasync it is clearing after.
 *
 * I/O errors.  A failed fdatasync poisons the image (img->poisoned):
 * Linux reports a writeback error to one fdatasync only and may have
 * dropped the pages, so a later fdatasync that succeeds proves
 * nothing about data written before the failure.  From then on every
 * write, zero, trim and flush fails with EIO (reads still work) until
 * the image is reopened; one line is logged when it happens.  Any
 * other failed call (pwrite, fallocate, also with ENOSPC) fails only
 * its own request: allocation reserves space before writing, so at
 * worst the reserved clusters leak, the image stays valid, and later
 * writes succeed once space is available again.
 *
 * Fallback for zeroing: only when fallocate is not supported
 * (EOPNOTSUPP, ENOSYS) do we write zeroes instead; any other error
 * fails the request.
 *
 * Zero and trim never orphan a data cluster: an allocated cluster is
 * zeroed or punched in place and keeps its entry, so a clean shutdown
 * leaves no leaked clusters (qemu-nbd leaves some).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "full-io.h"
#include "minmax.h"
#include "pieces.h"
#include "poisoned.h"
#include "qad-error.h"
#include "qed-image.h"

/* Most clusters one allocating write handles at once. */
#define MAX_ALLOC_CLUSTERS 256

/* Lock the guest clusters under [offset, offset+len) against other
 * changes to their L2 entries.
 */
static int
lock_clusters (struct qed_image *img, uint64_t offset, uint64_t len)
{
  uint64_t first = offset >> img->geom.cluster_bits;
  uint64_t end = ((offset + len - 1) >> img->geom.cluster_bits) + 1;

  if (rangelock_acquire (&img->changing, first, end) == -1) {
    qad_error ("%s: cluster range lock: %m", img->dev.name);
    return -1;
  }
  return 0;
}

static void
unlock_clusters (struct qed_image *img, uint64_t offset, uint64_t len)
{
  uint64_t first = offset >> img->geom.cluster_bits;
  uint64_t end = ((offset + len - 1) >> img->geom.cluster_bits) + 1;

  rangelock_release (&img->changing, first, end);
}

int
qed_write_header (struct qed_image *img)
{
  unsigned char buf[QED_HEADER_BYTES];

  qed_header_encode (&img->header, buf);
  if (full_pwrite (img->fd, buf, sizeof buf, 0) == -1) {
    qad_error ("%s: cannot write the QED header: %m", img->dev.name);
    return -1;
  }
  return 0;
}

bool
qed_poisoned (struct qed_image *img)
{
  return __atomic_load_n (&img->poisoned, __ATOMIC_ACQUIRE) != 0;
}

/* An fdatasync failed with ERR: poison the image, logging it once.
 * Returns -1 with errno EIO.
 */
static int
poison (struct qed_image *img, int err)
{
  if (__atomic_exchange_n (&img->poisoned, 1, __ATOMIC_ACQ_REL) == 0)
    qad_error ("%s: fdatasync failed: %s: data written before it may be "
               "lost; refusing every further write and flush with EIO "
               "until the image is reopened", img->dev.name, strerror (err));
  errno = EIO;
  return -1;
}

static int
sync_file (struct qed_image *img)
{
  if (refuse_if_poisoned (qed_poisoned (img), &errno) == -1)
    return -1;
  if (fdatasync (img->fd) == -1)
    return poison (img, errno);
  return 0;
}

/* Make every write this caller completed durable, sharing fdatasyncs
 * with concurrent callers: a caller takes a ticket; an fdatasync that
 * starts after the ticket was taken covers it.  So N writers that need
 * a sync at once cost about two fdatasyncs, not N.  Once one fails,
 * its waiters and every later caller fail: no new fdatasync is started
 * (it could succeed and acknowledge data the failed one lost).
 */
static int
group_sync (struct qed_image *img)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->sync_lock);
  uint64_t ticket = ++img->sync_requested;

  while (img->sync_completed < ticket) {
    if (refuse_if_poisoned (qed_poisoned (img), &errno) == -1)
      return -1;
    if (!img->sync_running) {
      uint64_t target = img->sync_requested;
      int r, e;

      img->sync_running = true;
      pthread_mutex_unlock (&img->sync_lock);
      r = fdatasync (img->fd);
      e = errno;
      pthread_mutex_lock (&img->sync_lock);
      img->sync_running = false;
      if (r == 0)
        img->sync_completed = target;
      else
        poison (img, e);
      pthread_cond_broadcast (&img->sync_done);
    }
    else
      pthread_cond_wait (&img->sync_done, &img->sync_lock);
  }
  return 0;
}

int
qed_clear_autoclear (struct qed_image *img)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->lock);

  if ((img->header.autoclear_features & ~QED_AUTOCLEAR_FEATURE_MASK) == 0)
    return 0;
  img->header.autoclear_features &= QED_AUTOCLEAR_FEATURE_MASK;
  if (qed_write_header (img) == -1)
    return -1;
  return sync_file (img);
}

/* Before an allocation: without a backing file, make NEED_CHECK
 * durable, then count the allocation as in flight.
 */
static int
begin_alloc (struct qed_image *img)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->lock);

  if (img->backing == NULL && !img->need_check_on_disk) {
    img->header.features |= QED_F_NEED_CHECK;
    if (qed_write_header (img) == -1 || sync_file (img) == -1) {
      img->header.features &= ~QED_F_NEED_CHECK;
      return -1;
    }
    img->need_check_on_disk = true;
  }
  img->allocs_in_flight++;
  return 0;
}

static void
end_alloc (struct qed_image *img)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->lock);

  img->allocs_in_flight--;
  img->alloc_gen++;
}

/* Reserve BYTES at the end of the file. */
static uint64_t
reserve (struct qed_image *img, uint64_t bytes)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->lock);
  uint64_t off = img->file_end;

  /* A file whose size is not a multiple of the cluster size (trailing
   * bytes QED does not define) is allocated past the partial cluster.
   */
  off = (off + img->geom.cluster_size - 1) & ~(img->geom.cluster_size - 1);
  img->file_end = off + bytes;
  return off;
}

/* Return the L2 table for L1 index L1_INDEX, creating it when CREATE. */
static int
get_l2 (struct qed_image *img, uint64_t l1_index, bool create,
        uint64_t *l2_offset)
{
  const struct qed_geometry *g = &img->geom;
  uint64_t off, file_end;
  unsigned char entry[8];
  CLEANUP_FREE char *zeroes = NULL;
  int r = -1;

  pthread_mutex_lock (&img->lock);
  off = img->l1[l1_index];
  file_end = img->file_end;
  pthread_mutex_unlock (&img->lock);
  if (off != 0 || !create)
    goto check;

  pthread_mutex_lock (&img->l2_alloc_lock);
  pthread_mutex_lock (&img->lock);
  off = img->l1[l1_index];
  file_end = img->file_end;
  pthread_mutex_unlock (&img->lock);
  if (off != 0) {
    pthread_mutex_unlock (&img->l2_alloc_lock);
    goto check;
  }

  if (begin_alloc (img) == -1)
    goto out_unlock;
  zeroes = calloc (1, g->table_bytes);
  if (zeroes == NULL) {
    qad_error ("%s: %m", img->dev.name);
    goto out_end;
  }
  off = reserve (img, g->table_bytes);
  if (full_pwrite (img->fd, zeroes, g->table_bytes, off) == -1) {
    qad_error ("%s: cannot write a new L2 table at offset %" PRIu64 ": %m",
               img->dev.name, off);
    goto out_end;
  }
  /* The table before the L1 entry that points at it. */
  if (img->backing && group_sync (img) == -1)
    goto out_end;
  if (qed_l2cache_insert_empty (img->l2cache, off) == -1)
    goto out_end;
  store_le64 (entry, off);
  if (full_pwrite (img->fd, entry, 8,
                   img->header.l1_table_offset + l1_index * 8) == -1) {
    qad_error ("%s: cannot write L1 entry %" PRIu64 ": %m",
               img->dev.name, l1_index);
    goto out_end;
  }
  pthread_mutex_lock (&img->lock);
  img->l1[l1_index] = off;
  file_end = img->file_end;
  pthread_mutex_unlock (&img->lock);
  r = 0;
 out_end:
  end_alloc (img);
 out_unlock:
  pthread_mutex_unlock (&img->l2_alloc_lock);
  if (r == -1)
    return -1;
  *l2_offset = off;
  return 0;

 check:
  if (off != 0 && !qed_table_offset_valid (g, off, file_end)) {
    qad_error ("%s: corrupt QED image: L1 entry %" PRIu64 " = %" PRIu64
               ": not a valid L2 table offset", img->dev.name,
               l1_index, off);
    errno = EIO;
    return -1;
  }
  *l2_offset = off;
  return 0;
}

/* Write N consecutive L2 entries of one table, on disk then in the
 * cache.
 */
static int
set_l2_entries (struct qed_image *img, uint64_t l2_offset, uint64_t index,
                const uint64_t *values, uint64_t n)
{
  unsigned char buf[MAX_ALLOC_CLUSTERS * 8] = { 0 };
  uint64_t i;

  if (n == 0 || n > MAX_ALLOC_CLUSTERS)
    return 0;
  for (i = 0; i < n; ++i)
    store_le64 (buf + i * 8, values[i]);
  if (full_pwrite (img->fd, buf, n * 8, l2_offset + index * 8) == -1) {
    qad_error ("%s: cannot write L2 entries %" PRIu64 "..%" PRIu64
               " of the table at %" PRIu64 ": %m", img->dev.name,
               index, index + n - 1, l2_offset);
    return -1;
  }
  for (i = 0; i < n; ++i)
    qed_l2cache_set (img->l2cache, l2_offset, index + i, values[i]);
  return 0;
}

/* What the guest saw in [offset, offset+len) of a cluster of KIND
 * before it was allocated: backing data or zeroes.
 */
static int
old_contents (struct qed_image *img, enum qed_kind kind, char *buf,
              uint64_t len, uint64_t offset)
{
  uint64_t n = 0;

  if (kind == QED_KIND_UNALLOCATED && img->backing &&
      offset < img->dev.size) {
    n = MIN (len, img->dev.size - offset);
    if (qad_blockdev_pread (img->backing, buf, n, offset) == -1)
      return -1;
  }
  memset (buf + n, 0, len - n);
  return 0;
}

/* Write cluster I (0-based) of an allocation of clusters starting at
 * guest cluster FIRST: the old contents, overlaid with the part of
 * BUF (guest range [offset, offset+len)) that falls inside it.
 */
static int
write_partial_cluster (struct qed_image *img, enum qed_kind kind,
                       char *bounce, const char *buf, uint64_t len,
                       uint64_t offset, uint64_t first, uint64_t i,
                       uint64_t host)
{
  const uint64_t cs = img->geom.cluster_size;
  uint64_t cstart = (first + i) << img->geom.cluster_bits;
  uint64_t from = MAX (offset, cstart);
  uint64_t to = MIN (offset + len, cstart + cs);

  if (old_contents (img, kind, bounce, cs, cstart) == -1)
    return -1;
  memcpy (bounce + (from - cstart), buf + (from - offset), to - from);
  if (full_pwrite (img->fd, bounce, cs, host + i * cs) == -1) {
    qad_error ("%s: cannot write a new cluster at offset %" PRIu64 ": %m",
               img->dev.name, host + i * cs);
    return -1;
  }
  return 0;
}

/* Allocate the clusters under [offset, offset+len), all of KIND
 * (UNALLOCATED or ZERO) and inside one L2 table, and write BUF into
 * them, with the rest of each cluster from backing or zeroes.  The
 * caller holds the range lock.
 */
static int
alloc_write (struct qed_image *img, enum qed_kind kind, const char *buf,
             uint64_t len, uint64_t offset, bool fua)
{
  const struct qed_geometry *g = &img->geom;
  const uint64_t cs = g->cluster_size;
  const uint64_t first = offset >> g->cluster_bits;
  const uint64_t n = ((offset + len - 1) >> g->cluster_bits) - first + 1;
  const bool head = (offset & (cs - 1)) != 0;
  const bool tail = ((offset + len) & (cs - 1)) != 0;
  uint64_t l2_offset, host, entries[MAX_ALLOC_CLUSTERS], i;
  uint64_t whole_first = 0, whole_end = n;  /* clusters written from BUF */
  CLEANUP_FREE char *bounce = NULL;
  int r = -1;

  if (n > MAX_ALLOC_CLUSTERS) {
    qad_error ("%s: internal error: allocation of %" PRIu64 " clusters",
               img->dev.name, n);
    errno = EINVAL;
    return -1;
  }
  if (get_l2 (img, first >> g->table_bits, true, &l2_offset) == -1)
    return -1;
  if (begin_alloc (img) == -1)
    return -1;
  host = reserve (img, n * cs);

  /* Only the first and last clusters can be partial: they go through
   * a bounce cluster; whole clusters are written from BUF directly.
   */
  if (head || tail) {
    bounce = malloc (cs);
    if (bounce == NULL) {
      qad_error ("%s: %m", img->dev.name);
      goto out;
    }
  }
  if (head || (n == 1 && tail)) {
    if (write_partial_cluster (img, kind, bounce, buf, len, offset,
                               first, 0, host) == -1)
      goto out;
    whole_first = 1;
  }
  if (tail && n - 1 >= whole_first) {
    if (write_partial_cluster (img, kind, bounce, buf, len, offset,
                               first, n - 1, host) == -1)
      goto out;
    whole_end = n - 1;
  }
  if (whole_end > whole_first) {
    uint64_t gstart = (first + whole_first) << g->cluster_bits;
    if (full_pwrite (img->fd, buf + (gstart - offset),
                     (whole_end - whole_first) * cs,
                     host + whole_first * cs) == -1) {
      qad_error ("%s: cannot write new clusters at offset %" PRIu64 ": %m",
                 img->dev.name, host + whole_first * cs);
      goto out;
    }
  }

  /* Data before the entries that point at it. */
  if (img->backing && group_sync (img) == -1)
    goto out;
  for (i = 0; i < n; ++i)
    entries[i] = host + i * cs;
  if (set_l2_entries (img, l2_offset, first & (g->table_entries - 1),
                      entries, n) == -1)
    goto out;
  if (fua && group_sync (img) == -1)
    goto out;
  r = 0;

 out:
  end_alloc (img);
  return r;
}

/* Clip a run starting at OFFSET to one L2 table and the allocation cap. */
static uint64_t
clip_alloc_run (struct qed_image *img, uint64_t offset, uint64_t len)
{
  const struct qed_geometry *g = &img->geom;
  uint64_t span = UINT64_C (1) << (g->cluster_bits + g->table_bits);
  uint64_t to_table_end = span - (offset & (span - 1));
  uint64_t cap = MAX_ALLOC_CLUSTERS * g->cluster_size -
    (offset & (g->cluster_size - 1));

  return MIN (len, MIN (to_table_end, cap));
}

static bool
check_range (struct qed_image *img, const char *what, uint64_t count,
             uint64_t offset)
{
  if (img->readonly) {
    qad_error ("%s: %s: image is open read-only", img->dev.name, what);
    errno = EROFS;
    return false;
  }
  if (refuse_if_poisoned (qed_poisoned (img), &errno) == -1)
    return false;
  if (!range_within (offset, count, img->dev.size)) {
    qad_error ("%s: %s beyond the end of the image: offset=%" PRIu64
               " count=%" PRIu64 " size=%" PRIu64, img->dev.name, what,
               offset, count, img->dev.size);
    errno = ENOSPC;
    return false;
  }
  return true;
}

int
qed_pwrite (struct qed_image *img, const void *vbuf, uint64_t count,
            uint64_t offset, bool fua)
{
  const char *buf = vbuf;
  bool wrote_in_place = false;

  if (!check_range (img, "write", count, offset))
    return -1;

  while (count > 0) {
    struct qed_mapping m;

    if (qed_map (img, offset, count, &m) == -1)
      return -1;
    if (m.kind == QED_KIND_DATA) {
      if (full_pwrite (img->fd, buf, m.length, m.host_offset) == -1) {
        qad_error ("%s: write failed: host offset %" PRIu64 " length %"
                   PRIu64 ": %m", img->dev.name, m.host_offset, m.length);
        return -1;
      }
      wrote_in_place = true;
    }
    else {
      uint64_t len = clip_alloc_run (img, offset, m.length);
      int r;

      if (lock_clusters (img, offset, len) == -1)
        return -1;
      /* Look again: another writer may have allocated meanwhile. */
      r = qed_map (img, offset, len, &m);
      if (r == 0 && m.kind != QED_KIND_DATA)
        r = alloc_write (img, m.kind, buf, m.length, offset, fua);
      unlock_clusters (img, offset, len);
      if (r == -1)
        return -1;
      if (m.kind == QED_KIND_DATA)
        continue;               /* now allocated: write in place */
    }
    buf += m.length;
    offset += m.length;
    count -= m.length;
  }
  if (fua && wrote_in_place)
    return group_sync (img);
  return 0;
}

/* Does this fallocate errno mean "not supported here" (so writing
 * zeroes instead is right) rather than an I/O error?
 */
static bool
fallocate_unsupported (int err)
{
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS;
}

/* One piece of zeroes written by zero_in_place. */
static int
write_host_zeroes (void *opaque, const void *buf, uint64_t count,
                   uint64_t host)
{
  struct qed_image *img = opaque;

  if (full_pwrite (img->fd, buf, count, host) == -1) {
    qad_error ("%s: cannot zero host offset %" PRIu64 ": %m",
               img->dev.name, host);
    return -1;
  }
  return 0;
}

/* Zero [offset, offset+len) of allocated clusters in place.  With
 * FAST, fail with ENOTSUP rather than write zeroes.
 */
static int
zero_in_place (struct qed_image *img, uint64_t host, uint64_t len,
               bool may_trim, bool fast)
{
  int mode = may_trim ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

  if (fallocate (img->fd, mode, host, len) == 0)
    return 0;
  if (!fallocate_unsupported (errno))
    goto fallocate_failed;
  if (may_trim &&
      fallocate (img->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                 host, len) == 0)
    return 0;
  if (may_trim && !fallocate_unsupported (errno))
    goto fallocate_failed;
  /* No fallocate support: write zeroes. */
  if (fast) {
    errno = ENOTSUP;
    return -1;
  }
  return qad_write_zeroes (img->dev.name, len, host, write_host_zeroes,
                           img);

 fallocate_failed:
  qad_error ("%s: cannot zero host offset %" PRIu64 " length %" PRIu64
             ": fallocate: %m", img->dev.name, host, len);
  return -1;
}

/* Make the clusters of [offset, offset+len) zero clusters; the caller
 * holds their range lock and checked they are not DATA.  LEN is whole
 * clusters, except that the image's last cluster may be partial: it
 * counts as a whole one (the spec, section 6).
 */
static int
set_zero_clusters (struct qed_image *img, uint64_t len, uint64_t offset)
{
  const struct qed_geometry *g = &img->geom;
  uint64_t first = offset >> g->cluster_bits;
  uint64_t n = (len + g->cluster_size - 1) >> g->cluster_bits;
  uint64_t l2_offset, values[MAX_ALLOC_CLUSTERS], i;

  if (get_l2 (img, first >> g->table_bits, true, &l2_offset) == -1)
    return -1;
  for (i = 0; i < n; ++i)
    values[i] = QED_ENTRY_ZERO;
  return set_l2_entries (img, l2_offset, first & (g->table_entries - 1),
                         values, n);
}

/* Zero or trim whole clusters in [offset, offset+len) (cluster-aligned). */
static int
zero_whole_clusters (struct qed_image *img, uint64_t len, uint64_t offset,
                     bool may_trim, bool trim_only, bool fast)
{

  while (len > 0) {
    struct qed_mapping m;
    uint64_t n = clip_alloc_run (img, offset, len);
    int r = 0;

    if (lock_clusters (img, offset, n) == -1)
      return -1;
    r = qed_map (img, offset, n, &m);
    if (r == 0) {
      switch (m.kind) {
      case QED_KIND_DATA:
        r = zero_in_place (img, m.host_offset, m.length,
                           may_trim || trim_only, fast);
        break;
      case QED_KIND_ZERO:
        break;
      case QED_KIND_UNALLOCATED:
        /* Reads zero already unless there is a backing file.  Over a
         * backing file, trim too makes zero clusters, so that trimmed
         * clusters always read as zeroes whatever their state was.
         */
        if (img->backing)
          r = set_zero_clusters (img, m.length, offset);
        break;
      }
    }
    unlock_clusters (img, offset, n);
    if (r == -1)
      return -1;
    offset += m.length;
    len -= m.length;
  }
  return 0;
}

/* Would zeroing [offset, offset+len), inside one cluster, need data
 * written?  Only when the cluster is unallocated over a backing file.
 */
static int
partial_zero (struct qed_image *img, uint64_t len, uint64_t offset,
              bool may_trim, bool fast, bool fua)
{
  struct qed_mapping m;
  CLEANUP_FREE char *zeroes = NULL;

  if (qed_map (img, offset, len, &m) == -1)
    return -1;
  if (m.kind == QED_KIND_ZERO ||
      (m.kind == QED_KIND_UNALLOCATED && !img->backing))
    return 0;
  if (m.kind == QED_KIND_DATA && m.length == len)
    return zero_in_place (img, m.host_offset, len, false, fast);
  if (fast) {
    errno = ENOTSUP;
    return -1;
  }
  zeroes = calloc (1, len);
  if (zeroes == NULL) {
    qad_error ("%s: %m", img->dev.name);
    return -1;
  }
  return qed_pwrite (img, zeroes, len, offset, fua);
}

int
qed_zero (struct qed_image *img, uint64_t count, uint64_t offset,
          bool may_trim, bool fast, bool fua)
{
  const uint64_t cs = img->geom.cluster_size;
  uint64_t head, body;

  if (!check_range (img, "zero", count, offset))
    return -1;
  if (count == 0)
    return 0;

  /* Unaligned head, inside the first cluster. */
  head = MIN (count, (cs - (offset & (cs - 1))) & (cs - 1));
  if (head) {
    if (partial_zero (img, head, offset, may_trim, fast, fua) == -1)
      return -1;
    offset += head;
    count -= head;
  }
  body = count & ~(cs - 1);
  if (body) {
    if (zero_whole_clusters (img, body, offset, may_trim, false, fast) == -1)
      return -1;
    offset += body;
    count -= body;
  }
  if (count &&
      partial_zero (img, count, offset, may_trim, fast, fua) == -1)
    return -1;
  if (fua)
    return group_sync (img);
  return 0;
}

int
qed_trim (struct qed_image *img, uint64_t count, uint64_t offset, bool fua)
{
  const uint64_t cs = img->geom.cluster_size;
  uint64_t start, end;

  if (!check_range (img, "trim", count, offset))
    return -1;
  start = (offset + cs - 1) & ~(cs - 1);
  end = (offset + count) & ~(cs - 1);
  /* The image's last cluster may be partial: trim it as a whole. */
  if (offset + count == img->dev.size)
    end = offset + count;
  if (start < end &&
      zero_whole_clusters (img, end - start, start, true, true, false) == -1)
    return -1;
  if (fua)
    return group_sync (img);
  return 0;
}

int
qed_flush (struct qed_image *img)
{
  uint64_t gen;

  if (refuse_if_poisoned (qed_poisoned (img), &errno) == -1)
    return -1;

  pthread_mutex_lock (&img->lock);
  gen = img->alloc_gen;
  pthread_mutex_unlock (&img->lock);

  if (group_sync (img) == -1)
    return -1;

  /* Everything allocated before the fdatasync is durable: if nothing
   * is in flight and nothing completed since, NEED_CHECK can go.
   */
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&img->lock);
  if (img->need_check_on_disk && !img->unchecked &&
      img->allocs_in_flight == 0 && img->alloc_gen == gen) {
    img->header.features &= ~QED_F_NEED_CHECK;
    if (qed_write_header (img) == -1 || sync_file (img) == -1) {
      img->header.features |= QED_F_NEED_CHECK;
      return -1;
    }
    img->need_check_on_disk = false;
  }
  return 0;
}
