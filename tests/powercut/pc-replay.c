/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The crash-state generator.
 *
 * Notes on the design
 *
 * A crash state is what the disk could hold if the power failed right
 * after record POINT of the log: it starts from the snapshot of the
 * directory taken before the server started and applies the logged
 * operations with seq <= POINT, following the durability rules that
 * ext4 and XFS document:
 *
 * - A write, truncate or fallocate of a file is durable once an fsync
 *   or fdatasync of that file (or a sync/syncfs) that STARTED after
 *   it was recorded has COMPLETED successfully (its SYNC_END is at or
 *   before POINT).  Writes through O_SYNC/O_DSYNC descriptors or with
 *   RWF_DSYNC are durable when they complete.  sync_file_range makes
 *   nothing durable.
 * - A creating open, a rename, a link or an unlink is durable once an
 *   fsync of its parent directory (both directories for a rename)
 *   that started after it has completed.
 * - Every other operation at or before POINT is optional: each data
 *   operation is kept with probability KEEP_PERMILLE, and a kept write
 *   or zeroing is torn with probability TEAR_PERMILLE: then each
 *   512-byte sector of it (at file offsets that are multiples of 512)
 *   is kept or not on its own.  The optional namespace operations
 *   are kept as a prefix (the journal commits them in order).
 *   Operations are applied in log order, so a later write wins where
 *   both are kept.
 *
 * Operations in flight at the crash (not yet recorded) are not
 * applied: the states explored are a subset of the possible ones, so
 * a failure found is real.
 *
 * Nodes: a name in a state's directory names a file the recorder
 * numbered (1..nr_files) or, for snapshot files the server never
 * opened, SNAP_NODE | snapshot index.
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

#include "pc-replay.h"
#include "pc-rng.h"
#include "vector.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

#define SNAP_NODE UINT32_C (0x80000000)

static void *
xcalloc (size_t n, size_t size)
{
  void *p = calloc (n ? n : 1, size);
  if (p == NULL) {
    perror ("calloc");
    exit (EXIT_FAILURE);
  }
  return p;
}

/* vector_grow, or exit: a replay has no use for half a model. */
static void *
xgrow (void *ptr, size_t len, size_t *cap, size_t n, size_t itemsize)
{
  void *p = vector_grow (ptr, len, cap, n, itemsize);
  if (p == NULL) {
    perror ("realloc");
    exit (EXIT_FAILURE);
  }
  return p;
}

static uint8_t *
read_whole (const char *path, size_t *len)
{
  int fd = open (path, O_RDONLY|O_CLOEXEC);
  struct stat st;
  uint8_t *buf;
  size_t done = 0;

  if (fd == -1 || fstat (fd, &st) == -1) {
    fprintf (stderr, "powercut: %s: %m\n", path);
    if (fd >= 0) close (fd);
    return NULL;
  }
  buf = xcalloc (st.st_size + 1, 1);
  while (done < (size_t) st.st_size) {
    ssize_t r = read (fd, buf + done, st.st_size - done);
    if (r <= 0) {
      fprintf (stderr, "powercut: %s: short read\n", path);
      free (buf);
      close (fd);
      return NULL;
    }
    done += r;
  }
  close (fd);
  *len = done;
  return buf;
}

static int
load_snapshot (struct pc_log *lg, const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  size_t alloc = 0;

  if (d == NULL) {
    fprintf (stderr, "powercut: %s: %m\n", dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    char path[4096];
    struct stat st;
    struct pc_snapfile *f;

    snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
    if (stat (path, &st) == -1 || !S_ISREG (st.st_mode))
      continue;
    lg->snap = xgrow (lg->snap, lg->nr_snap, &alloc, 1, sizeof *lg->snap);
    f = &lg->snap[lg->nr_snap];
    f->name = strdup (e->d_name);
    f->data = read_whole (path, &f->len);
    if (f->name == NULL || f->data == NULL) {
      closedir (d);
      return -1;
    }
    lg->nr_snap++;
  }
  closedir (d);
  return 0;
}

static int
snap_index (const struct pc_log *lg, const char *name)
{
  size_t i;
  for (i = 0; i < lg->nr_snap; ++i)
    if (strcmp (lg->snap[i].name, name) == 0)
      return i;
  return -1;
}

/* The directory part of NAME ("." when none); returns a static copy. */
static const char *
parent_of (const char *name, char *buf, size_t len)
{
  const char *slash = strrchr (name, '/');
  if (slash == NULL)
    return ".";
  snprintf (buf, len, "%.*s", (int) (slash - name), name);
  return buf;
}

struct sync_ev {
  uint64_t start, end;          /* record seqs */
  uint32_t file;                /* 0: every file */
};
DEFINE_VECTOR_TYPE (sync_ev_vector, struct sync_ev);

/* The earliest SYNC_END among successful syncs of FILE (or of every
 * file) that started after SEQ.  FILE 0 with DIRNAME: syncs of the
 * directory so named.
 */
static uint64_t
durable_after (const struct pc_log *lg, const struct sync_ev *ev, size_t n,
               uint64_t seq, uint32_t file, const char *dirname)
{
  uint64_t best = UINT64_MAX;
  size_t i;

  for (i = 0; i < n; ++i) {
    if (ev[i].start <= seq || ev[i].end >= best)
      continue;
    if (ev[i].file == 0 ||
        (dirname == NULL && ev[i].file == file) ||
        (dirname != NULL && lg->file_dir[ev[i].file] &&
         strcmp (lg->file_name[ev[i].file], dirname) == 0))
      best = ev[i].end;
  }
  return best;
}

static void
add_op (struct pc_log *lg, size_t *alloc, const struct pc_op *op)
{
  lg->ops = xgrow (lg->ops, lg->nr_ops, alloc, 1, sizeof *lg->ops);
  lg->ops[lg->nr_ops++] = *op;
}

/* Copy a name out of the log, NUL-terminated. */
static const char *
log_name (const uint8_t *p, uint32_t len)
{
  char *s = xcalloc (len + 1, 1);
  memcpy (s, p, len);
  return s;
}

static void
build_systematic (struct pc_log *lg)
{
  uint64_t s, n = 0;
  uint64_t *pts = xcalloc (2 * lg->nr_records + 2, sizeof *pts);

  for (s = 1; s <= lg->nr_records; ++s) {
    if (lg->rec_type[s - 1] == PC_SYNC_START)
      pts[n++] = s - 1;
    else if (lg->rec_type[s - 1] == PC_SYNC_END)
      pts[n++] = s;
  }
  pts[n++] = lg->nr_records;
  lg->sys_points = pts;
  lg->nr_sys = n;
}

struct pc_log *
pc_log_load (const char *path, const char *snapdir)
{
  struct pc_log *lg = xcalloc (1, sizeof *lg);
  size_t pos = 0, ops_alloc = 0, i;
  uint64_t expect = 1;
  sync_ev_vector ev = empty_vector;
  char pbuf[4096], pbuf2[4096];

  lg->raw = read_whole (path, &lg->raw_len);
  if (lg->raw == NULL || load_snapshot (lg, snapdir) == -1)
    goto fail;

  /* Pass 1: count records and files. */
  while (pos < lg->raw_len) {
    struct pc_rec r;
    if (lg->raw_len - pos < sizeof r) {
      fprintf (stderr, "powercut: %s: truncated record at %zu\n", path, pos);
      goto fail;
    }
    memcpy (&r, lg->raw + pos, sizeof r);
    if (r.magic != PC_LOG_MAGIC || r.seq != expect) {
      fprintf (stderr, "powercut: %s: bad record at %zu (magic %#x, seq "
               "%" PRIu64 ", expected %" PRIu64 ")\n",
               path, pos, r.magic, r.seq, expect);
      goto fail;
    }
    pos += sizeof r + r.name_len + r.name2_len + r.data_len;
    if (pos > lg->raw_len) {
      fprintf (stderr, "powercut: %s: truncated record %" PRIu64 "\n",
               path, r.seq);
      goto fail;
    }
    if (r.file > lg->nr_files)
      lg->nr_files = r.file;
    expect++;
  }
  lg->nr_records = expect - 1;
  lg->rec_ts = xcalloc (lg->nr_records, sizeof *lg->rec_ts);
  lg->rec_type = xcalloc (lg->nr_records, sizeof *lg->rec_type);
  lg->file_name = xcalloc (lg->nr_files + 1, sizeof *lg->file_name);
  lg->file_dir = xcalloc (lg->nr_files + 1, sizeof *lg->file_dir);
  lg->file_snap = xcalloc (lg->nr_files + 1, sizeof *lg->file_snap);
  lg->snap_file = xcalloc (lg->nr_snap, sizeof *lg->snap_file);
  for (i = 0; i <= lg->nr_files; ++i)
    lg->file_snap[i] = -1;

  /* Pass 2: operations, syncs, file identities. */
  for (pos = 0; pos < lg->raw_len; ) {
    struct pc_rec r;
    const uint8_t *p;
    struct pc_op op = { .durable_at = UINT64_MAX };

    memcpy (&r, lg->raw + pos, sizeof r);
    p = lg->raw + pos + sizeof r;
    pos += sizeof r + r.name_len + r.name2_len + r.data_len;
    lg->rec_ts[r.seq - 1] = r.ts_ns;
    lg->rec_type[r.seq - 1] = r.type;
    op.type = r.type;
    op.seq = r.seq;
    op.file = r.file;
    op.flags = r.flags;
    op.off = r.off;
    op.len = r.len;

    switch (r.type) {
    case PC_OPEN: {
      const char *name = log_name (p, r.name_len);
      if (lg->file_name[r.file] == NULL) {
        int si = snap_index (lg, name);
        lg->file_name[r.file] = (char *) name;
        lg->file_dir[r.file] = (r.flags & O_DIRECTORY) != 0 ||
          strcmp (name, ".") == 0;
        if (!(r.flags & PC_OPEN_CREATED) && si >= 0 &&
            lg->snap_file[si] == 0) {
          lg->file_snap[r.file] = si;
          lg->snap_file[si] = r.file;
        }
      }
      if ((r.flags & PC_OPEN_CREATED) && lg->file_name[r.file] == name) {
        op.name = name;         /* owned by file_name */
        add_op (lg, &ops_alloc, &op);
      }
      else if ((r.flags & O_TRUNC) && !lg->file_dir[r.file]) {
        op.type = PC_TRUNCATE;
        op.off = 0;
        add_op (lg, &ops_alloc, &op);
      }
      if (lg->file_name[r.file] != name)
        free ((char *) name);
      break;
    }
    case PC_WRITE:
      op.data = p + r.name_len + r.name2_len;
      op.len = r.data_len;
      if (r.flags & PC_WRITE_DSYNC)
        op.durable_at = r.seq;
      add_op (lg, &ops_alloc, &op);
      break;
    case PC_FALLOCATE:
      if (r.flags & ~(FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE|
                      FALLOC_FL_ZERO_RANGE)) {
        fprintf (stderr, "powercut: %s: fallocate mode %#x is not "
                 "modelled\n", path, r.flags);
        goto fail;
      }
      /* fall through */
    case PC_TRUNCATE:
      add_op (lg, &ops_alloc, &op);
      break;
    case PC_RENAME: case PC_LINK: case PC_UNLINK:
      op.name = log_name (p, r.name_len);
      if (r.name2_len)
        op.name2 = log_name (p + r.name_len, r.name2_len);
      if (op.name[0] == '/' || (op.name2 && op.name2[0] == '/')) {
        fprintf (stderr, "powercut: %s: a name moves across the watched "
                 "directory: not modelled\n", path);
        goto fail;
      }
      add_op (lg, &ops_alloc, &op);
      break;
    case PC_SYNC_END:
      if (r.ret == 0 && (r.flags & 0xff) != PC_SYNC_RANGE) {
        struct sync_ev e = {
          .start = r.start_seq, .end = r.seq,
          .file = (r.flags & PC_SYNC_ALL) ? 0 : r.file,
        };
        if (sync_ev_vector_append (&ev, e) == -1) {
          perror ("realloc");
          exit (EXIT_FAILURE);
        }
      }
      break;
    default:
      break;
    }
  }

  /* When does each operation become durable? */
  for (i = 0; i < lg->nr_ops; ++i) {
    struct pc_op *op = &lg->ops[i];
    uint64_t d;

    switch (op->type) {
    case PC_WRITE: case PC_TRUNCATE: case PC_FALLOCATE:
      d = durable_after (lg, ev.ptr, ev.len, op->seq, op->file, NULL);
      if (d < op->durable_at)
        op->durable_at = d;
      break;
    default:
      d = durable_after (lg, ev.ptr, ev.len, op->seq, 0,
                         parent_of (op->name, pbuf, sizeof pbuf));
      if (op->name2) {
        uint64_t d2 = durable_after (lg, ev.ptr, ev.len, op->seq, 0,
                                     parent_of (op->name2, pbuf2,
                                                sizeof pbuf2));
        if (d2 > d)
          d = d2;
      }
      op->durable_at = d;
    }
  }
  sync_ev_vector_reset (&ev);
  build_systematic (lg);
  lg->content = xcalloc (lg->nr_files + 1, sizeof *lg->content);
  lg->touched = xcalloc (lg->nr_files + 1, sizeof *lg->touched);
  lg->st_names = xcalloc (lg->nr_snap + lg->nr_ops + 1,
                          sizeof *lg->st_names);
  lg->st_nodes = xcalloc (lg->nr_snap + lg->nr_ops + 1,
                          sizeof *lg->st_nodes);
  return lg;

 fail:
  sync_ev_vector_reset (&ev);
  pc_log_free (lg);
  return NULL;
}

void
pc_log_free (struct pc_log *lg)
{
  size_t i;

  if (lg == NULL)
    return;
  for (i = 0; i < lg->nr_snap; ++i) {
    free (lg->snap[i].name);
    free (lg->snap[i].data);
  }
  for (i = 0; i < lg->nr_ops; ++i) {
    if (lg->ops[i].type != PC_OPEN)
      free ((char *) lg->ops[i].name);
    free ((char *) lg->ops[i].name2);
  }
  if (lg->file_name) {
    for (i = 0; i <= lg->nr_files; ++i)
      free (lg->file_name[i]);
  }
  if (lg->content) {
    for (i = 0; i <= lg->nr_files; ++i)
      free (lg->content[i].data);
  }
  free (lg->snap);
  free (lg->ops);
  free (lg->raw);
  free (lg->rec_ts);
  free (lg->rec_type);
  free (lg->file_name);
  free (lg->file_dir);
  free (lg->file_snap);
  free (lg->snap_file);
  free (lg->sys_points);
  free (lg->content);
  free (lg->touched);
  free (lg->st_names);
  free (lg->st_nodes);
  free (lg);
}

uint64_t
pc_crash_ts (const struct pc_log *lg, uint64_t point)
{
  if (point == 0 || lg->nr_records == 0)
    return 0;
  if (point > lg->nr_records)
    point = lg->nr_records;
  return lg->rec_ts[point - 1];
}

uint64_t
pc_point_before (const struct pc_log *lg, uint64_t ts)
{
  uint64_t lo = 0, hi = lg->nr_records;

  /* Records are stamped under the log's mutex: in order. */
  while (lo < hi) {
    uint64_t mid = (lo + hi) / 2;
    if (lg->rec_ts[mid] < ts)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void
pc_log_stats (const struct pc_log *lg, uint64_t *writes, uint64_t *syncs)
{
  uint64_t s;
  *writes = *syncs = 0;
  for (s = 0; s < lg->nr_records; ++s) {
    if (lg->rec_type[s] == PC_WRITE)
      ++*writes;
    else if (lg->rec_type[s] == PC_SYNC_END)
      ++*syncs;
  }
}

void
pc_crash_pick (const struct pc_log *lg, uint64_t seed, uint64_t i,
               uint64_t n, struct pc_crash *c)
{
  static const unsigned keeps[] = { 0, 100, 500, 900, 1000 };
  uint64_t nsys = 2 * lg->nr_sys;
  uint64_t rng = pc_rng_seed (seed, i);

  /* At most half of the states are systematic: spread them evenly. */
  if (nsys > n / 2)
    nsys = n / 2;
  c->seed = pc_rng_next (&rng);
  if (i < nsys) {
    uint64_t j = nsys == 2 * lg->nr_sys ? i : i * (2 * lg->nr_sys) / nsys;
    c->point = lg->sys_points[j / 2];
    c->keep_permille = (j & 1) ? 1000 : 0;
    c->tear_permille = 0;
    return;
  }
  c->point = pc_rng_next (&rng) % (lg->nr_records + 1);
  c->keep_permille = keeps[pc_rng_next (&rng) % 5];
  c->tear_permille = (pc_rng_next (&rng) & 1) ? 300 : 0;
}

static struct pc_buf *
content_for_write (struct pc_log *lg, uint32_t file)
{
  struct pc_buf *b = &lg->content[file];

  if (!lg->touched[file]) {
    const uint8_t *src = NULL;
    size_t len = 0;
    if (lg->file_snap[file] >= 0) {
      src = lg->snap[lg->file_snap[file]].data;
      len = lg->snap[lg->file_snap[file]].len;
    }
    if (b->alloc < len + 1) {
      free (b->data);
      b->alloc = len + 1;
      b->data = xcalloc (b->alloc, 1);
    }
    if (len)
      memcpy (b->data, src, len);
    b->len = len;
    lg->touched[file] = true;
  }
  return b;
}

static void
resize (struct pc_buf *b, uint64_t len)
{
  if (len > SIZE_MAX) {
    fprintf (stderr, "powercut: a file of %" PRIu64 " bytes\n", len);
    exit (EXIT_FAILURE);
  }
  b->data = xgrow (b->data, 0, &b->alloc, len, 1);
  if (len > b->len)
    memset (b->data + b->len, 0, len - b->len);
  b->len = len;
}

/* Apply bytes [OFF, OFF+LEN) of a write (DATA NULL: zeroes), sector by
 * sector when TORN.  EXTEND: the file grows to cover what is applied.
 */
static void
apply_range (struct pc_buf *b, uint64_t off, uint64_t len,
             const uint8_t *data, bool extend, bool torn, uint64_t *rng)
{
  uint64_t pos = off, end = off + len;

  while (pos < end) {
    uint64_t next = torn ? (pos / 512 + 1) * 512 : end;
    uint64_t stop;
    if (next > end)
      next = end;
    if (!torn || (pc_rng_next (rng) & 1)) {
      stop = next;
      if (!extend && stop > b->len)
        stop = b->len;
      if (stop > pos) {
        if (stop > b->len)
          resize (b, stop);
        if (data)
          memcpy (b->data + pos, data + (pos - off), stop - pos);
        else
          memset (b->data + pos, 0, stop - pos);
      }
    }
    pos = next;
  }
}

static void
apply_data (struct pc_log *lg, const struct pc_op *op, bool torn,
            uint64_t *rng)
{
  struct pc_buf *b = content_for_write (lg, op->file);

  switch (op->type) {
  case PC_WRITE:
    apply_range (b, op->off, op->len, op->data, true, torn, rng);
    break;
  case PC_TRUNCATE:
    resize (b, op->off);
    break;
  case PC_FALLOCATE: {
    bool keep = op->flags & FALLOC_FL_KEEP_SIZE;
    if (op->flags & (FALLOC_FL_PUNCH_HOLE|FALLOC_FL_ZERO_RANGE))
      apply_range (b, op->off, op->len, NULL, !keep, torn, rng);
    else if (!keep && op->off + op->len > b->len)
      resize (b, op->off + op->len);
    break;
  }
  }
}

static ssize_t
st_find (struct pc_log *lg, const char *name)
{
  size_t i;
  for (i = 0; i < lg->st_count; ++i)
    if (lg->st_names[i] && strcmp (lg->st_names[i], name) == 0)
      return i;
  return -1;
}

static void
st_set (struct pc_log *lg, const char *name, uint32_t node)
{
  ssize_t i = st_find (lg, name);
  if (i == -1)
    i = lg->st_count++;
  lg->st_names[i] = name;
  lg->st_nodes[i] = node;
}

static void
apply_name (struct pc_log *lg, const struct pc_op *op)
{
  ssize_t i;

  switch (op->type) {
  case PC_OPEN:                 /* created */
    st_set (lg, op->name, op->file);
    break;
  case PC_LINK: case PC_RENAME:
    i = st_find (lg, op->name);
    if (i == -1)
      break;                    /* its creation was lost */
    st_set (lg, op->name2, lg->st_nodes[i]);
    if (op->type == PC_RENAME)
      lg->st_names[st_find (lg, op->name)] = NULL;
    break;
  case PC_UNLINK:
    i = st_find (lg, op->name);
    if (i >= 0)
      lg->st_names[i] = NULL;
    break;
  }
}

void
pc_state_build (struct pc_log *lg, const struct pc_crash *c)
{
  uint64_t rng = c->seed;
  bool names_cut = false;
  size_t i;

  for (i = 0; i <= lg->nr_files; ++i)
    lg->touched[i] = false;
  lg->st_count = 0;
  for (i = 0; i < lg->nr_snap; ++i) {
    lg->st_names[lg->st_count] = lg->snap[i].name;
    lg->st_nodes[lg->st_count++] =
      lg->snap_file[i] ? lg->snap_file[i] : (SNAP_NODE | i);
  }

  for (i = 0; i < lg->nr_ops && lg->ops[i].seq <= c->point; ++i) {
    const struct pc_op *op = &lg->ops[i];
    bool durable = op->durable_at <= c->point;
    bool data = op->type == PC_WRITE || op->type == PC_TRUNCATE ||
      op->type == PC_FALLOCATE;

    if (data) {
      bool keep = durable ||
        pc_rng_next (&rng) % 1000 < c->keep_permille;
      bool torn = !durable && keep &&
        pc_rng_next (&rng) % 1000 < c->tear_permille;
      if (keep)
        apply_data (lg, op, torn, &rng);
    }
    else {
      if (!durable && !names_cut &&
          pc_rng_next (&rng) % 1000 >= c->keep_permille)
        names_cut = true;
      if (durable || !names_cut)
        apply_name (lg, op);
    }
  }
}

bool
pc_state_file (struct pc_log *lg, const char *name,
               const uint8_t **data, size_t *len)
{
  ssize_t i = st_find (lg, name);
  uint32_t node;

  if (i == -1)
    return false;
  node = lg->st_nodes[i];
  if (node & SNAP_NODE) {
    *data = lg->snap[node & ~SNAP_NODE].data;
    *len = lg->snap[node & ~SNAP_NODE].len;
  }
  else if (lg->touched[node]) {
    *data = lg->content[node].data;
    *len = lg->content[node].len;
  }
  else if (lg->file_snap[node] >= 0) {
    *data = lg->snap[lg->file_snap[node]].data;
    *len = lg->snap[lg->file_snap[node]].len;
  }
  else {
    *data = (const uint8_t *) "";
    *len = 0;
  }
  return true;
}

int
pc_state_write (struct pc_log *lg, const char *dir)
{
  size_t i;

  for (i = 0; i < lg->st_count; ++i) {
    const uint8_t *data;
    size_t len, done = 0;
    char path[4096];
    int fd;

    if (lg->st_names[i] == NULL || strchr (lg->st_names[i], '/') ||
        !pc_state_file (lg, lg->st_names[i], &data, &len))
      continue;
    snprintf (path, sizeof path, "%s/%s", dir, lg->st_names[i]);
    unlink (path);
    fd = open (path, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644);
    if (fd == -1) {
      fprintf (stderr, "powercut: %s: %m\n", path);
      return -1;
    }
    while (done < len) {
      ssize_t r = write (fd, data + done, len - done);
      if (r <= 0) {
        fprintf (stderr, "powercut: %s: %m\n", path);
        close (fd);
        return -1;
      }
      done += r;
    }
    close (fd);
  }
  return 0;
}
