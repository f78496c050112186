/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are a QDB file.  When it reads as valid it
 * goes through the three ways the project changes a QDB file:
 *
 * - in place, as the dirty-bitmap filter does when it starts tracking
 *   (clear unknown autoclear bits, give every enabled bitmap all its
 *   data clusters) and then tracks writes (bits set in memory, the
 *   bytes of each touched data cluster written where the table says);
 * - repaired, as "qad-img check --repair" does (the model written
 *   compactly to a new file, which must read back with no leaks);
 * - edited, as "qad-img bitmap" does (add, remove, clear, enable,
 *   disable, merge, chosen by a PRNG seeded from the input), written
 *   compactly or fully allocated.
 *
 * Notes on the design.  An expected model (names, flags, granularity,
 * disk size and the bits of every bitmap) is kept here, beside the
 * library's, and updated by the rules of docs/specs/qdb.txt: merge
 * sets a destination granule when any source granule overlapping its
 * bytes is dirty (computed here granule by granule, independently of
 * qdb_merge_bitmap's run-based code); clear zeroes the bits and drops
 * in_use.  After every write the file is read back and must equal the
 * expected model exactly.  In particular repair never changes a bit of
 * a valid file.  Models with more than MAX_MODEL_BITS bits in one
 * bitmap are only read and repaired, to bound the time per input.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "qad-error.h"
#include "lsb-bits.h"
#include "qdb.h"

#define MAX_MODEL_BITS (UINT64_C (1) << 22)
#define MAX_EXPECTED 64

static void
quiet (const char *msg)
{
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

struct ebm {
  char *name;
  uint16_t flags;
  uint64_t gran, disk, nr;
  uint8_t *bits;                /* nr bits, rounded up to bytes, + 1 */
};

struct expected {
  struct ebm v[MAX_EXPECTED + 16];     /* room for the adds */
  size_t n;
};

static void
ebm_from (struct ebm *e, const struct qdb_bitmap *bm)
{
  size_t len = bm->nr_granules / 8 + 1;

  e->name = strdup (bm->name);
  e->flags = bm->flags;
  e->gran = bm->granularity;
  e->disk = bm->disk_size;
  e->nr = bm->nr_granules;
  e->bits = calloc (len, 1);
  if (e->name == NULL || e->bits == NULL)
    abort ();
  memcpy (e->bits, bm->bits, (bm->nr_granules + 7) / 8);
}

static void
ebm_free (struct ebm *e)
{
  free (e->name);
  free (e->bits);
}

static void
expected_free (struct expected *x)
{
  size_t i;

  for (i = 0; i < x->n; ++i)
    ebm_free (&x->v[i]);
  x->n = 0;
}

static void
compare (const struct expected *x, const struct qdb_file *q, const char *when)
{
  size_t i;
  uint64_t g;

  if (q->nr_bitmaps != x->n)
    fuzz_fail ("%s: %zu bitmaps, expected %zu", when, q->nr_bitmaps, x->n);
  for (i = 0; i < x->n; ++i) {
    const struct ebm *e = &x->v[i];
    const struct qdb_bitmap *bm = &q->bitmaps[i];
    uint64_t dirty = 0;

    if (strcmp (bm->name, e->name) != 0 || bm->flags != e->flags ||
        bm->granularity != e->gran || bm->disk_size != e->disk ||
        bm->nr_granules != e->nr)
      fuzz_fail ("%s: bitmap %zu (\"%s\") differs from the expected "
                 "\"%s\"", when, i, bm->name, e->name);
    for (g = 0; g < e->nr; ++g) {
      if (bit_test (bm->bits, g) != bit_test (e->bits, g))
        fuzz_fail ("%s: bitmap \"%s\" granule %" PRIu64 " is %d, expected "
                   "%d", when, e->name, g, bit_test (bm->bits, g),
                   bit_test (e->bits, g));
      dirty += bit_test (e->bits, g);
    }
    if (qdb_dirty_granules (bm) != dirty)
      fuzz_fail ("%s: bitmap \"%s\" counts %" PRIu64 " dirty granules, "
                 "expected %" PRIu64, when, e->name,
                 qdb_dirty_granules (bm), dirty);
  }
}

static struct qdb_file *
read_back (struct qdb_membuf *mb, const char *when)
{
  struct qdb_io io;
  struct qdb_file *q;

  qdb_io_init_mem (&io, mb, "fuzz.qdb");
  q = qdb_read (&io, true);
  if (q == NULL)
    fuzz_fail ("%s: the file does not read back", when);
  return q;
}

/* Write Q to a new buffer (as qad-img does), read it back, compare. */
static void
rewrite (struct qdb_file *q, bool allocate_all, const struct expected *x,
         const char *when, struct qdb_membuf *out)
{
  struct qdb_io io;
  struct qdb_file *again;

  memset (out, 0, sizeof *out);
  qdb_io_init_mem (&io, out, "new.qdb");
  if (qdb_write (&io, q, allocate_all) == -1)
    fuzz_fail ("%s: writing a valid model failed: %s", when,
               strerror (errno));
  again = read_back (out, when);
  if (again->leaked_clusters)
    fuzz_fail ("%s: a file just written has %" PRIu64 " leaked clusters",
               when, again->leaked_clusters);
  compare (x, again, when);
  qdb_free (again);
}

/* Random granules [first, last] of bitmap I dirtied in both models. */
static void
dirty_some (struct fuzz_rng *r, struct qdb_bitmap *bm, struct ebm *e,
            uint64_t *first, uint64_t *last)
{
  uint64_t room, span;

  *first = fuzz_below (r, e->nr);
  room = e->nr - *first;
  span = 1 + fuzz_below (r, fuzz_below (r, 4) && room > 64 ? 64 : room);
  *last = *first + span - 1;
  bits_set_range (bm->bits, *first, *last + 1);
  bits_set_range (e->bits, *first, *last + 1);
}

/* The filter's in-place path on MB (a valid file) with model X. */
static void
track_in_place (struct qdb_membuf *mb, struct expected *x,
                struct fuzz_rng *r)
{
  struct qdb_io io;
  struct qdb_file *q;
  size_t i, k, nops;

  qdb_io_init_mem (&io, mb, "fuzz.qdb");
  q = qdb_read (&io, true);
  if (q == NULL)
    fuzz_fail ("in place: the file no longer reads");
  if (qdb_clear_unknown_autoclear (&io, q) == -1)
    fuzz_fail ("in place: clearing autoclear bits failed");
  for (i = 0; i < q->nr_bitmaps; ++i)
    if ((q->bitmaps[i].flags & QDB_FLAG_ENABLED) &&
        qdb_allocate_all (&io, q, &q->bitmaps[i]) == -1)
      fuzz_fail ("in place: allocating bitmap \"%s\" failed",
                 q->bitmaps[i].name);

  nops = fuzz_below (r, 8);
  for (k = 0; k < nops && q->nr_bitmaps; ++k) {
    struct qdb_bitmap *bm = &q->bitmaps[fuzz_below (r, q->nr_bitmaps)];
    struct ebm *e = &x->v[bm - q->bitmaps];
    uint64_t first, last, b, cs = q->cluster_size;

    if (!(bm->flags & QDB_FLAG_ENABLED) || e->nr == 0)
      continue;
    dirty_some (r, bm, e, &first, &last);
    /* Write back every cluster of bits that changed. */
    for (b = (first / 8) / cs; b <= (last / 8) / cs; ++b) {
      uint64_t off = qdb_bits_file_offset (q, bm, b * cs);
      if (off == 0) {
        if (bm->table[b] == QDB_ENTRY_ALL_ONES)
          continue;
        fuzz_fail ("in place: bitmap \"%s\" cluster %" PRIu64 " has no "
                   "data cluster after qdb_allocate_all", bm->name, b);
      }
      if (io.pwrite (io.opaque, bm->bits + b * cs, cs, off) == -1)
        abort ();
    }
  }
  qdb_free (q);
  q = read_back (mb, "in place, after tracking");
  compare (x, q, "in place, after tracking");
  qdb_free (q);
}

static const char *const names[] = { "a", "b", "c", "bitmap0", "fz-1", "x" };

/* One qad-img bitmap operation on Q and on X. */
static void
edit (struct qdb_file *q, struct expected *x, struct fuzz_rng *r)
{
  size_t i = fuzz_below (r, x->n ? x->n : 1), j;
  unsigned op = fuzz_below (r, 6);

  if (x->n == 0)
    op = 0;
  switch (op) {
  case 0: {                     /* add */
    const char *name = names[fuzz_below (r, 6)];
    uint64_t gran = UINT64_C (512) << fuzz_below (r, 9);
    const uint64_t sizes[] = { 0, 1, 512, 65536 * 3 + 7, 1 << 20 };
    uint64_t disk = x->n ? x->v[0].disk : sizes[fuzz_below (r, 5)];
    bool exists = false;
    int k;

    for (j = 0; j < x->n; ++j)
      exists |= strcmp (x->v[j].name, name) == 0;
    while (disk / gran > MAX_MODEL_BITS && gran < QDB_MAX_GRANULARITY)
      gran <<= 1;
    k = qdb_add_bitmap (q, name, gran, disk, QDB_FLAG_ENABLED);
    fuzz_trace ("qdb: add %s granularity %" PRIu64 " disk %" PRIu64
                ": %d", name, gran, disk, k);
    if ((k == -1) != exists)
      fuzz_fail ("adding bitmap \"%s\" %s", name,
                 k == -1 ? "failed" : "succeeded though it exists");
    if (k >= 0)
      ebm_from (&x->v[x->n++], &q->bitmaps[k]);
    break;
  }
  case 1:                       /* remove */
    fuzz_trace ("qdb: remove %s", x->v[i].name);
    if (qdb_remove_bitmap (q, i) == -1)
      fuzz_fail ("removing bitmap %zu failed", i);
    ebm_free (&x->v[i]);
    memmove (&x->v[i], &x->v[i + 1], (x->n - i - 1) * sizeof x->v[0]);
    x->n--;
    break;
  case 2:                       /* clear */
    fuzz_trace ("qdb: clear %s", x->v[i].name);
    qdb_clear_bitmap (&q->bitmaps[i]);
    memset (x->v[i].bits, 0, x->v[i].nr / 8 + 1);
    x->v[i].flags &= ~QDB_FLAG_IN_USE;
    break;
  case 3:                       /* enable / disable */
    q->bitmaps[i].flags ^= QDB_FLAG_ENABLED;
    x->v[i].flags ^= QDB_FLAG_ENABLED;
    break;
  case 4: {                     /* merge i into j */
    struct ebm *s = &x->v[i], *d;
    uint64_t g, a;
    int rr;

    j = fuzz_below (r, x->n);
    d = &x->v[j];
    fuzz_trace ("qdb: merge %s into %s", s->name, d->name);
    rr = qdb_merge_bitmap (q, &q->bitmaps[i], &q->bitmaps[j]);
    if ((rr == -1) != (s->disk != d->disk))
      fuzz_fail ("merging \"%s\" into \"%s\": %s", s->name, d->name,
                 rr == -1 ? "refused" : "accepted with different disks");
    if (rr == -1)
      break;
    /* Destination granule g covers [g*dg, min((g+1)*dg, disk)). */
    for (g = 0; g < d->nr; ++g) {
      uint64_t lo = g * d->gran, hi = lo + d->gran;
      if (hi > d->disk)
        hi = d->disk;
      for (a = lo / s->gran; a * s->gran < hi && a < s->nr; ++a)
        if (bit_test (s->bits, a)) {
          bit_set (d->bits, g);
          break;
        }
    }
    break;
  }
  case 5: {                     /* a tracked write */
    uint64_t first, last;
    if (x->v[i].nr)
      dirty_some (r, &q->bitmaps[i], &x->v[i], &first, &last);
    break;
  }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qdb_membuf mb, out = { 0 }, out2 = { 0 };
  struct expected x = { .n = 0 };
  struct qdb_file *q, *q2;
  struct qdb_io io;
  struct fuzz_rng r;
  bool small = true;
  size_t i, nops;

  qad_set_error_handler (getenv ("FUZZ_TRACE") ? NULL : quiet);
  fuzz_rng_init (&r, data, size);
  mb.data = malloc (size ? size : 1);
  if (mb.data == NULL)
    abort ();
  memcpy (mb.data, data, size);
  mb.size = mb.alloc = size;
  qdb_io_init_mem (&io, &mb, "fuzz.qdb");
  q = qdb_read (&io, true);
  if (q == NULL)
    goto out;
  for (i = 0; i < q->nr_bitmaps && i < MAX_EXPECTED; ++i) {
    ebm_from (&x.v[x.n++], &q->bitmaps[i]);
    small &= q->bitmaps[i].nr_granules <= MAX_MODEL_BITS;
  }
  if (q->nr_bitmaps > MAX_EXPECTED) {
    qdb_free (q);
    goto out;
  }

  /* Repair: the model written to a new file, every bit kept. */
  rewrite (q, false, &x, "repair", &out);
  if (!small) {
    qdb_free (q);
    goto out;
  }

  /* qad-img bitmap: edits on the repaired file's model. */
  q2 = read_back (&out, "before editing");
  nops = 1 + fuzz_below (&r, 8);
  for (i = 0; i < nops; ++i)
    edit (q2, &x, &r);
  compare (&x, q2, "after editing, in memory");
  rewrite (q2, fuzz_below (&r, 2), &x, "after editing", &out2);
  qdb_free (q2);

  /* The filter: tracking in place on the edited file. */
  track_in_place (&out2, &x, &r);

  /* And on the original (mutated but valid) file, as it came. */
  expected_free (&x);
  for (i = 0; i < q->nr_bitmaps; ++i)
    ebm_from (&x.v[x.n++], &q->bitmaps[i]);
  qdb_free (q);
  track_in_place (&mb, &x, &r);

 out:
  expected_free (&x);
  free (out.data);
  free (out2.data);
  free (mb.data);
  return 0;
}
