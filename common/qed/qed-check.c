/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * One pass over the L1 and L2 tables marks every cluster in use in a
 * bitmap of the file's clusters (one bit per cluster: 2 MiB for a
 * 1 TiB file of 64 KiB clusters).  An entry that is not valid, or that
 * points at a cluster already marked, is a corruption; repair clears
 * it (the guest then sees backing data or zeroes there: data loss,
 * reported).  Unmarked clusters past the header are leaks.
 *
 * QEMU never reclaims leaks.  Repair here does: data clusters above
 * the final size are copied down into leaked slots (copies made
 * durable before the L2 entries are switched, so a crash mid-repair
 * leaves only leaks), then the file is truncated after its last used
 * cluster.  Leaks that remain below a table that cannot move are
 * punched, which frees their space even though they still count.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "rounding.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qed-check.h"

struct checker {
  struct qed_image *img;
  bool repair;
  struct qed_check_result *res;
  qad_check_report_fn report;
  void *opaque;
  uint64_t nclusters;           /* clusters in the file, rounded up */
  uint8_t *used;                /* bitmap of used clusters */
  uint64_t *table;              /* one L2 table, host-endian */
};

static void
say (struct checker *c, const char *fs, ...)
  __attribute__ ((format (printf, 2, 3)));

static void
say (struct checker *c, const char *fs, ...)
{
  char msg[512];
  va_list args;

  if (!c->report)
    return;
  va_start (args, fs);
  vsnprintf (msg, sizeof msg, fs, args);
  va_end (args);
  c->report (c->opaque, msg);
}

static bool
is_used (struct checker *c, uint64_t cl)
{
  return bit_test (c->used, cl);
}

/* Mark N clusters from byte offset OFF; false if any was marked. */
static bool
mark_range (struct checker *c, uint64_t off, uint64_t n)
{
  uint64_t first = off >> c->img->geom.cluster_bits, i;

  for (i = 0; i < n; ++i)
    if (is_used (c, first + i))
      return false;
  for (i = 0; i < n; ++i)
    bit_set (c->used, first + i);
  return true;
}

static int
write_entry (struct checker *c, uint64_t table_off, uint64_t index,
             uint64_t value)
{
  unsigned char e[8];

  store_le64 (e, value);
  if (full_pwrite (c->img->fd, e, 8, table_off + index * 8) == -1) {
    qad_error ("%s: repair: cannot write the entry at %" PRIu64 ": %m",
               c->img->dev.name, table_off + index * 8);
    return -1;
  }
  return 0;
}

/* Read the L2 table at OFF into c->table (little-endian entries). */
static int
read_table (struct checker *c, uint64_t off)
{
  if (full_pread (c->img->fd, c->table, c->img->geom.table_bytes, off) == -1) {
    qad_error ("%s: cannot read the L2 table at %" PRIu64 ": %m",
               c->img->dev.name, off);
    return -1;
  }
  return 0;
}

static int
check_l2 (struct checker *c, uint64_t l1_index, uint64_t l2_off)
{
  struct qed_image *img = c->img;
  const struct qed_geometry *g = &img->geom;
  uint64_t j;

  if (read_table (c, l2_off) == -1)
    return -1;
  for (j = 0; j < g->table_entries; ++j) {
    uint64_t v = load_le64 (&c->table[j]);
    uint64_t guest = (l1_index << (g->cluster_bits + g->table_bits)) |
      (j << g->cluster_bits);
    const char *why;

    if (v == QED_ENTRY_UNALLOCATED)
      continue;
    if (v == QED_ENTRY_ZERO) {
      c->res->zero_clusters++;
      continue;
    }
    if (!qed_cluster_offset_valid (g, v, img->file_end))
      why = "invalid data cluster offset";
    else if (!mark_range (c, v, 1))
      why = "data cluster referenced twice";
    else {
      c->res->data_clusters++;
      continue;
    }
    c->res->corruptions++;
    say (c, "%s: L2 table at %" PRIu64 " entry %" PRIu64 " (guest offset %"
         PRIu64 ") = %" PRIu64 ": %s%s", img->dev.name, l2_off, j, guest, v,
         why, c->repair ? ": cleared, its data is lost" : "");
    if (c->repair) {
      if (write_entry (c, l2_off, j, 0) == -1)
        return -1;
      c->res->corruptions_fixed++;
    }
  }
  return 0;
}

/* Find a data cluster's L2 entry: (table offset, index) by host
 * offset, for the clusters that compaction moves.
 */
struct move {
  uint64_t host;                /* current offset */
  uint64_t table_off, index;    /* the entry that points at it */
  uint64_t dest;
};

static int
cmp_move (const void *a, const void *b)
{
  const struct move *x = a, *y = b;
  return x->host < y->host ? -1 : x->host > y->host;
}

/* Move data clusters above the final size down into leaked slots, then
 * truncate.  Everything is already consistent (no corruption left).
 */
static int
reclaim_leaks (struct checker *c)
{
  struct qed_image *img = c->img;
  const struct qed_geometry *g = &img->geom;
  const uint64_t cs = g->cluster_size;
  uint64_t used_count = 0, i, j, nmoves = 0, top, lo;
  CLEANUP_FREE struct move *moves = NULL;
  CLEANUP_FREE char *buf = NULL;

  for (i = 0; i < c->nclusters; ++i)
    used_count += is_used (c, i);

  /* Data clusters at or above USED_COUNT are the ones to move; there
   * are at most as many as there are leaks below USED_COUNT.
   */
  if (c->res->leaks >= qad_limits.max_bitmap_bytes / sizeof *moves) {
    qad_error ("%s: repair: %" PRIu64 " leaked clusters need more than the "
               "limit of %" PRIu64 " bytes to plan their reclaim (raise "
               "max-bitmap-size=)", img->dev.name, c->res->leaks,
               qad_limits.max_bitmap_bytes);
    errno = EFBIG;
    return -1;
  }
  moves = calloc (c->res->leaks + 1, sizeof *moves);
  buf = malloc (cs);
  if (moves == NULL || buf == NULL) {
    qad_error ("%s: repair: %m", img->dev.name);
    return -1;
  }
  for (i = 0; i < g->table_entries; ++i) {
    uint64_t l2_off = img->l1[i];
    if (l2_off == 0)
      continue;
    if (read_table (c, l2_off) == -1)
      return -1;
    for (j = 0; j < g->table_entries; ++j) {
      uint64_t v = load_le64 (&c->table[j]);
      if (v > QED_ENTRY_ZERO && (v >> g->cluster_bits) >= used_count &&
          nmoves < c->res->leaks) {
        moves[nmoves].host = v;
        moves[nmoves].table_off = l2_off;
        moves[nmoves].index = j;
        nmoves++;
      }
    }
  }
  /* Highest first, into the lowest free slots, while the top used
   * cluster is a data cluster we know how to move.
   */
  qsort (moves, nmoves, sizeof *moves, cmp_move);
  top = c->nclusters;
  while (top > 0 && !is_used (c, top - 1))
    top--;
  lo = img->header.header_size;
  for (i = nmoves; i-- > 0; ) {
    uint64_t cl = moves[i].host >> g->cluster_bits;
    if (cl + 1 != top)
      break;                    /* a table is on top: stop here */
    while (lo < cl && is_used (c, lo))
      lo++;
    if (lo >= cl)
      break;
    moves[i].dest = lo * cs;
    bit_set (c->used, lo);
    bit_clear (c->used, cl);
    while (top > 0 && !is_used (c, top - 1))
      top--;
  }
  /* Copies first, made durable, then the entries, then truncate. */
  for (i = 0; i < nmoves; ++i) {
    if (moves[i].dest == 0)
      continue;
    if (full_pread (img->fd, buf, cs, moves[i].host) == -1 ||
        full_pwrite (img->fd, buf, cs, moves[i].dest) == -1) {
      qad_error ("%s: repair: cannot move the cluster at %" PRIu64 ": %m",
                 img->dev.name, moves[i].host);
      return -1;
    }
  }
  if (fdatasync (img->fd) == -1)
    goto sync_error;
  for (i = 0; i < nmoves; ++i)
    if (moves[i].dest != 0 &&
        write_entry (c, moves[i].table_off, moves[i].index,
                     moves[i].dest) == -1)
      return -1;
  if (fdatasync (img->fd) == -1)
    goto sync_error;
  if (top * cs < img->file_end) {
    if (ftruncate (img->fd, top * cs) == -1) {
      qad_error ("%s: repair: cannot truncate to %" PRIu64 ": %m",
                 img->dev.name, top * cs);
      return -1;
    }
    img->file_end = top * cs;
  }

  /* Count what is left and punch it. */
  for (i = img->header.header_size; i < top; ++i) {
    if (!is_used (c, i)) {
      c->res->leaks_punched++;
      (void) fallocate (img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        i * cs, cs);
    }
  }
  c->res->leaks_fixed = c->res->leaks - c->res->leaks_punched;
  return 0;

 sync_error:
  qad_error ("%s: repair: fdatasync: %m", img->dev.name);
  return -1;
}

int
qed_check (struct qed_image *img, bool repair, struct qed_check_result *res,
           qad_check_report_fn report, void *opaque)
{
  return qed_check_progress (img, repair, res, report, opaque, NULL, NULL);
}

int
qed_check_progress (struct qed_image *img, bool repair,
                    struct qed_check_result *res,
                    qad_check_report_fn report, void *opaque,
                    qed_check_progress_fn progress, void *popaque)
{
  const struct qed_geometry *g = &img->geom;
  struct checker c = {
    .img = img, .repair = repair && !img->readonly, .res = res,
    .report = report, .opaque = opaque,
  };
  uint64_t i, whole;
  int r = -1;

  memset (res, 0, sizeof *res);
  res->need_check = (img->header.features & QED_F_NEED_CHECK) != 0;
  c.nclusters = div_round_up (img->file_end, g->cluster_size);
  whole = img->file_end >> g->cluster_bits;
  res->file_clusters = whole;
  if (div_round_up (c.nclusters, 8) + 1 > qad_limits.max_bitmap_bytes) {
    qad_error ("%s: check: a file of %" PRIu64 " bytes has %" PRIu64
               " clusters; their map exceeds the limit of %" PRIu64
               " bytes (raise max-bitmap-size=)", img->dev.name,
               img->file_end, c.nclusters, qad_limits.max_bitmap_bytes);
    errno = EFBIG;
    return -1;
  }
  c.used = calloc (div_round_up (c.nclusters, 8) + 1, 1);
  c.table = malloc (g->table_bytes);
  if (c.used == NULL || c.table == NULL) {
    qad_error ("%s: check: %m", img->dev.name);
    goto out;
  }

  mark_range (&c, 0, img->header.header_size);
  if (!mark_range (&c, img->header.l1_table_offset, img->header.table_size)) {
    res->corruptions++;
    say (&c, "%s: the L1 table at %" PRIu64 " overlaps the header",
         img->dev.name, img->header.l1_table_offset);
  }

  for (i = 0; i < g->table_entries; ++i) {
    uint64_t e = img->l1[i];
    const char *why;

    if (progress && i % 64 == 0)
      progress (popaque, i, g->table_entries + 1);
    if (e == 0)
      continue;
    if (!qed_table_offset_valid (g, e, img->file_end))
      why = "invalid L2 table offset";
    else if (!mark_range (&c, e, img->header.table_size))
      why = "L2 table overlaps another table or cluster";
    else {
      res->l2_tables++;
      if (check_l2 (&c, i, e) == -1)
        goto out;
      continue;
    }
    res->corruptions++;
    say (&c, "%s: L1 entry %" PRIu64 " = %" PRIu64 ": %s%s", img->dev.name,
         i, e, why, c.repair ? ": cleared, its data is lost" : "");
    if (c.repair) {
      if (write_entry (&c, img->header.l1_table_offset, i, 0) == -1)
        goto out;
      pthread_mutex_lock (&img->lock);
      img->l1[i] = 0;
      pthread_mutex_unlock (&img->lock);
      res->corruptions_fixed++;
    }
  }

  /* Leaks, counted as QEMU does: whole clusters past the header. */
  for (i = img->header.header_size; i < whole; ++i)
    if (!is_used (&c, i))
      res->leaks++;
  if (res->leaks)
    say (&c, "%s: %" PRIu64 " leaked cluster%s", img->dev.name,
         res->leaks, res->leaks == 1 ? "" : "s");

  if (c.repair) {
    qed_l2cache_clear (img->l2cache);
    /* A partial last cluster is never in use (every table and cluster
     * lies whole inside the file) and is not counted as a leak, but
     * the next allocation, which starts past it, would make it one:
     * truncate it away too.
     */
    if ((res->leaks || img->file_end % g->cluster_size) &&
        reclaim_leaks (&c) == -1)
      goto out;
    if (fdatasync (img->fd) == -1) {
      qad_error ("%s: repair: fdatasync: %m", img->dev.name);
      goto out;
    }
    if (res->need_check && qed_check_corruptions_left (res) == 0) {
      pthread_mutex_lock (&img->lock);
      img->header.features &= ~QED_F_NEED_CHECK;
      r = qed_write_header (img);
      if (r == 0 && fdatasync (img->fd) == -1) {
        qad_error ("%s: repair: fdatasync after clearing NEED_CHECK: %m",
                   img->dev.name);
        r = -1;
      }
      if (r == 0)
        img->need_check_on_disk = img->unchecked = false;
      else
        img->header.features |= QED_F_NEED_CHECK;
      pthread_mutex_unlock (&img->lock);
      if (r == -1)
        goto out;
      res->need_check_cleared = true;
    }
  }
  res->image_end_offset = img->file_end;
  if (progress)
    progress (popaque, g->table_entries + 1, g->table_entries + 1);
  r = 0;

 out:
  free (c.used);
  free (c.table);
  return r;
}
