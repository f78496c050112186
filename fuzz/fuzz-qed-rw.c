/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are a QED image, opened read-write as the
 * plugin does with check=on: autoclear bits cleared, the consistency
 * check run with repair, then written (writes, zeroes, trims, flushes
 * chosen by a PRNG seeded from the input), read back, closed, and
 * opened and checked again.
 *
 * Notes on the design.  The invariants checked, besides "no crash,
 * no hang, no sanitizer report":
 *
 * 1. Repair never changes what the guest sees in a cluster that
 *    checked valid.  Which clusters are valid is decided here, by the
 *    rule docs/specs/qed.txt states and qed-check.c implements: in L1
 *    order, an L2 table is valid when its offset is valid and none of
 *    its clusters is already in use; in table order, an L2 entry is
 *    valid when it is 0, 1, or a valid offset of a cluster not yet in
 *    use.  Before the repair each such guest cluster is read (up to a
 *    byte budget) and hashed; after it, it must read the same, which
 *    covers the clusters that leak reclaim moves.
 * 2. After a repair that fixed every corruption, a second check finds
 *    none, and every read of the image succeeds.
 * 3. Writes, zeroes and trims on a repaired image succeed and read
 *    back as a shadow copy of the guest disk predicts; after a close
 *    and a fresh open, the check finds no corruption, no more leaks
 *    than the repair left, and the disk still matches the shadow.
 *
 * The image lives in a private directory beside "base.raw", a raw
 * backing file of an odd size; an image naming "base.raw" as its
 * backing file gets it, any other name is not opened (a mutated name
 * must not make the harness read arbitrary files).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "fuzz-util.h"
#include "lsb-bits.h"
#include "qad-error.h"
#include "qed-check.h"
#include "qed-image.h"
#include "vector.h"

#define BASE_SIZE (768 * 1024 + 1000)   /* shorter than most images */
#define WINDOW (UINT64_C (512) << 10)  /* bytes of each shadowed window */
#define SNAP_BUDGET (UINT64_C (1) << 20) /* bytes hashed before repair */
#define MAX_WRITE_GEOMETRY (UINT64_C (1) << 20) /* cluster * table size */

static void
quiet (const char *msg)
{
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A guest cluster that checked valid, and the hash of what it read. */
struct snap {
  uint64_t guest;
  uint64_t len;
  uint64_t hash;
};

DEFINE_VECTOR_TYPE (snap_vector, struct snap);

struct snaps {
  snap_vector v;
  uint64_t bytes;
};

static void
read_or_fail (struct qed_image *img, void *buf, uint64_t len, uint64_t off,
              const char *when)
{
  if (qed_pread (img, buf, len, off) == -1)
    fuzz_fail ("%s: read at %" PRIu64 " length %" PRIu64 " failed: %s",
               when, off, len, strerror (errno));
}

static void
snap_add (struct snaps *s, struct qed_image *img, uint64_t guest,
          uint8_t *buf)
{
  uint64_t len;

  if (guest >= img->dev.size || s->bytes >= SNAP_BUDGET)
    return;
  len = img->dev.size - guest;
  if (len > img->geom.cluster_size)
    len = img->geom.cluster_size;
  read_or_fail (img, buf, len, guest, "before repair, a valid cluster");
  if (snap_vector_append (&s->v, (struct snap) { guest, len,
                                                 fuzz_hash (buf, len) }) == -1)
    abort ();
  s->bytes += len;
}

/* Mark N clusters from byte offset OFF in USED; false (marking
 * nothing) if any was marked already.
 */
static bool
mark (uint8_t *used, unsigned cluster_bits, uint64_t off, uint64_t n)
{
  uint64_t first = off >> cluster_bits, i;

  for (i = 0; i < n; ++i)
    if (bit_test (used, first + i))
      return false;
  for (i = 0; i < n; ++i)
    bit_set (used, first + i);
  return true;
}

/* Invariant 1, first half: hash every guest cluster that checks valid. */
static void
snapshot_valid (struct qed_image *img, struct snaps *s)
{
  const struct qed_geometry *g = &img->geom;
  const uint64_t end = img->file_end;
  uint64_t nclusters = (end + g->cluster_size - 1) >> g->cluster_bits;
  uint8_t *used = calloc (nclusters / 8 + 2, 1);
  uint64_t *table = malloc (g->table_bytes);
  uint8_t *buf = malloc (g->cluster_size);
  uint64_t i, j;

  if (used == NULL || table == NULL || buf == NULL)
    abort ();
  mark (used, g->cluster_bits, 0, img->header.header_size);
  mark (used, g->cluster_bits, img->header.l1_table_offset,
        img->header.table_size);
  for (i = 0; i < g->table_entries; ++i) {
    uint64_t l2 = img->l1[i];

    if (l2 == 0 || !qed_table_offset_valid (g, l2, end) ||
        !mark (used, g->cluster_bits, l2, img->header.table_size))
      continue;
    if (full_pread (img->fd, table, g->table_bytes, l2) == -1)
      fuzz_fail ("cannot read the L2 table at %" PRIu64, l2);
    for (j = 0; j < g->table_entries; ++j) {
      uint64_t v = load_le64 (&table[j]);
      uint64_t guest = (i << (g->cluster_bits + g->table_bits)) |
        (j << g->cluster_bits);

      if (v > QED_ENTRY_ZERO &&
          (!qed_cluster_offset_valid (g, v, end) ||
           !mark (used, g->cluster_bits, v, 1)))
        continue;
      snap_add (s, img, guest, buf);
    }
  }
  free (used);
  free (table);
  free (buf);
}

/* Invariant 1, second half. */
static void
verify_snaps (struct qed_image *img, const struct snaps *s)
{
  uint8_t *buf = malloc (img->geom.cluster_size);
  size_t k;

  if (buf == NULL)
    abort ();
  for (k = 0; k < s->v.len; ++k) {
    read_or_fail (img, buf, s->v.ptr[k].len, s->v.ptr[k].guest,
                  "after repair, a cluster that checked valid");
    if (fuzz_hash (buf, s->v.ptr[k].len) != s->v.ptr[k].hash)
      fuzz_fail ("repair changed the guest cluster at %" PRIu64
                 " (length %" PRIu64 "), which checked valid",
                 s->v.ptr[k].guest, s->v.ptr[k].len);
  }
  free (buf);
}

/* The guest disk is shadowed in one or two windows (the start and the
 * end of the disk, which has the partial last cluster).
 */
struct window {
  uint64_t start, len;
  uint8_t *shadow;
};

static void
compare (struct qed_image *img, const struct window *w, uint64_t off,
         uint64_t len, const char *when)
{
  uint8_t *buf = malloc (len ? len : 1);
  uint64_t i;

  if (buf == NULL)
    abort ();
  read_or_fail (img, buf, len, w->start + off, when);
  if (memcmp (buf, w->shadow + off, len) != 0)
    for (i = 0; i < len; ++i)
      if (buf[i] != w->shadow[off + i])
        fuzz_fail ("%s: guest byte %" PRIu64 " reads 0x%02x, expected "
                   "0x%02x", when, w->start + off + i, buf[i],
                   w->shadow[off + i]);
  free (buf);
}

/* Where the contract allows either: each byte is its old value or 0. */
static void
resync_either (struct qed_image *img, struct window *w, uint64_t off,
               uint64_t len, const char *when)
{
  uint8_t *buf = malloc (len);
  uint64_t i;

  if (buf == NULL)
    abort ();
  read_or_fail (img, buf, len, w->start + off, when);
  for (i = 0; i < len; ++i) {
    if (buf[i] != 0 && buf[i] != w->shadow[off + i])
      fuzz_fail ("%s: byte %" PRIu64 " = 0x%02x, neither its old value "
                 "0x%02x nor 0", when, w->start + off + i, buf[i],
                 w->shadow[off + i]);
    w->shadow[off + i] = buf[i];
  }
  free (buf);
}

/* The shadow of a trim of [off, off+len) (window-relative): whole
 * clusters read as zeroes, partial ones are left alone; a range that
 * reaches the end of the disk trims the partial last cluster too
 * (docs/specs/qed.txt section 6, also over a backing file).
 */
static void
shadow_trim (struct qed_image *img, struct window *w, uint64_t off,
             uint64_t len)
{
  const uint64_t cs = img->geom.cluster_size;
  uint64_t g0 = w->start + off, g1 = g0 + len;
  uint64_t start = (g0 + cs - 1) & ~(cs - 1), end = g1 & ~(cs - 1);

  if (g1 == img->dev.size && g0 <= end)
    end = g1;
  if (start < end)
    memset (w->shadow + (start - w->start), 0, end - start);
}

static void
run_op (struct qed_image *img, struct fuzz_rng *r, struct window *w)
{
  const uint64_t cs = img->geom.cluster_size;
  uint64_t off, len;
  bool fua = fuzz_below (r, 4) == 0;
  uint8_t *buf;
  unsigned op;

  fuzz_range (r, w->len, cs, &off, &len);
  op = fuzz_below (r, 10);
  fuzz_trace ("qed: %s offset=%" PRIu64 " len=%" PRIu64 " fua=%d",
              op < 4 ? "write" : op < 7 ? "zero" : op < 9 ? "trim" : "flush",
              w->start + off, len, fua);
  switch (op) {
  case 0: case 1: case 2: case 3:
    buf = malloc (len);
    if (buf == NULL)
      abort ();
    fuzz_fill (r, buf, len);
    if (fuzz_below (r, 4) == 0)
      memset (buf, 0, len / 2);
    if (qed_pwrite (img, buf, len, w->start + off, fua) == -1)
      fuzz_fail ("write at %" PRIu64 " length %" PRIu64 " failed: %s",
                 w->start + off, len, strerror (errno));
    memcpy (w->shadow + off, buf, len);
    free (buf);
    break;
  case 4: case 5: case 6: {
    bool may_trim = fuzz_below (r, 2), fast = fuzz_below (r, 4) == 0;
    if (qed_zero (img, len, w->start + off, may_trim, fast, fua) == 0)
      memset (w->shadow + off, 0, len);
    else if (fast && errno == ENOTSUP)
      resync_either (img, w, off, len, "after a failed fast zero");
    else
      fuzz_fail ("zero at %" PRIu64 " length %" PRIu64 " failed: %s",
                 w->start + off, len, strerror (errno));
    break;
  }
  case 7: case 8:
    if (qed_trim (img, len, w->start + off, fua) == -1)
      fuzz_fail ("trim at %" PRIu64 " length %" PRIu64 " failed: %s",
                 w->start + off, len, strerror (errno));
    shadow_trim (img, w, off, len);
    break;
  case 9:
    if (qed_flush (img) == -1)
      fuzz_fail ("flush failed: %s", strerror (errno));
    break;
  }
  /* Read back a range. */
  fuzz_range (r, w->len, cs, &off, &len);
  if (len > 64 * 1024)
    len = 64 * 1024;
  compare (img, w, off, len, "after an operation");
}

static struct qed_image *
open_rw (const char *path, bool backing, uint64_t cache)
{
  struct qed_open_options opts = { .readonly = false, .no_backing = !backing,
                                   .l2_cache_bytes = cache };
  return qed_open (path, &opts);
}

/* Invariant 3. */
static void
write_phase (struct qed_image **imgp, const char *path, bool backing,
             uint64_t cache, struct fuzz_rng *r, uint64_t leaks_left)
{
  struct qed_image *img = *imgp;
  const uint64_t size = img->dev.size;
  struct window w[2];
  struct qed_check_result res;
  unsigned nw, k, nops, i;

  if (size <= 2 * WINDOW) {
    nw = 1;
    w[0].start = 0;
    w[0].len = size;
  }
  else {
    nw = 2;
    w[0].start = 0;
    w[0].len = WINDOW;
    w[1].start = size - WINDOW;
    w[1].len = WINDOW;
  }
  for (k = 0; k < nw; ++k) {
    w[k].shadow = malloc (w[k].len);
    if (w[k].shadow == NULL)
      abort ();
    read_or_fail (img, w[k].shadow, w[k].len, w[k].start,
                  "after repair, the whole disk");
  }

  nops = 1 + fuzz_below (r, 24);
  for (i = 0; i < nops; ++i)
    run_op (img, r, &w[fuzz_below (r, nw)]);
  for (k = 0; k < nw; ++k)
    compare (img, &w[k], 0, w[k].len, "after the writes");

  if (qed_close (img) == -1)
    fuzz_fail ("close after the writes failed: %s", strerror (errno));
  *imgp = img = open_rw (path, backing, cache);
  if (img == NULL)
    fuzz_fail ("the image does not open after the writes");
  if (img->header.features & QED_F_NEED_CHECK)
    fuzz_fail ("NEED_CHECK is still set after a clean close");
  if (qed_check (img, false, &res, NULL, NULL) == -1)
    fuzz_fail ("check after the writes failed: %s", strerror (errno));
  if (res.corruptions)
    fuzz_fail ("%" PRIu64 " corruption(s) after the writes",
               res.corruptions);
  if (res.leaks > leaks_left)
    fuzz_fail ("the writes leaked clusters: %" PRIu64 " leaks, %" PRIu64
               " before", res.leaks, leaks_left);
  for (k = 0; k < nw; ++k) {
    compare (img, &w[k], 0, w[k].len, "after reopening");
    free (w[k].shadow);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char path[PATH_MAX];
  struct qed_open_options ro_opts = { .readonly = true, .no_backing = true,
                                      .l2_cache_bytes = 65536 };
  struct qed_check_result res, res2;
  struct snaps snaps = { 0 };
  struct qed_image *img;
  struct fuzz_rng r;
  char *name = NULL;
  bool backing = false;
  uint64_t cache;

  qad_set_error_handler (getenv ("FUZZ_TRACE") ? NULL : quiet);
  if (path[0] == '\0') {
    char base[PATH_MAX];
    uint8_t *b = malloc (BASE_SIZE);
    struct fuzz_rng br = { 42 };

    if (b == NULL)
      abort ();
    fuzz_fill (&br, b, BASE_SIZE);
    fuzz_write_file (fuzz_path (base, sizeof base, "base.raw"), b, BASE_SIZE);
    free (b);
    fuzz_path (path, sizeof path, "fuzz.qed");
  }
  fuzz_rng_init (&r, data, size);
  fuzz_write_file (path, data, size);

  /* Which backing file?  Only base.raw is ever opened. */
  img = qed_open (path, &ro_opts);
  if (img == NULL)
    return 0;
  if (qed_read_backing_name (img, &name) == 0 && name &&
      strcmp (name, "base.raw") == 0)
    backing = true;
  free (name);
  qed_close (img);

  /* A small cache sometimes, so that eviction runs too. */
  cache = fuzz_below (&r, 2) ? 1 : 65536;
  img = open_rw (path, backing, cache);
  if (img == NULL)
    return 0;
  if (qed_clear_autoclear (img) == -1)
    fuzz_fail ("clearing autoclear bits failed: %s", strerror (errno));

  snapshot_valid (img, &snaps);
  if (qed_check (img, true, &res, NULL, NULL) == -1)
    fuzz_fail ("the repair failed: %s", strerror (errno));
  verify_snaps (img, &snaps);
  snap_vector_reset (&snaps.v);

  /* Invariant 2. */
  if (qed_check (img, false, &res2, NULL, NULL) == -1)
    fuzz_fail ("the check after repair failed: %s", strerror (errno));
  if (res.corruptions == res.corruptions_fixed && res2.corruptions)
    fuzz_fail ("the repair fixed %" PRIu64 " corruption(s), but a second "
               "check finds %" PRIu64, res.corruptions_fixed,
               res2.corruptions);
  if (res2.corruptions == 0 && res.need_check && !res.need_check_cleared)
    fuzz_fail ("the repair left NEED_CHECK set on an image it fixed");

  if (res2.corruptions == 0 && img->dev.size > 0 &&
      img->geom.cluster_size * img->header.table_size <= MAX_WRITE_GEOMETRY)
    write_phase (&img, path, backing, cache, &r, res2.leaks);
  qed_close (img);
  return 0;
}
