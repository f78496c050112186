/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Fuzz target: the bytes are an add-cow sidecar.  It is checked,
 * repaired and checked again, then written the way the filter writes
 * (copy-up of whole clusters into the image, bits set in memory, the
 * bitmap written back and synced, ALL_ALLOCATED set when every bit is
 * 1, through common/addcow's store in a persistence mode the PRNG
 * picks), with the operations chosen by a PRNG seeded from the input.
 *
 * Notes on the design.  The image and backing files the header names
 * are created beside the sidecar in a private directory, with sizes
 * and contents chosen by the PRNG, but only for plain names (letters,
 * digits, '.', '_', '-'): a mutated name must not make the harness
 * write anywhere else.  Other names are left to the check, which only
 * stats them and writes nothing but the sidecar.
 *
 * The guest-visible disk is computed here from the files, by the rule
 * of docs/specs/add-cow.txt: cluster c reads from the image when
 * ALL_ALLOCATED is set or its bit is 1, else from the backing file
 * (zeroes past its end, or with no backing file); bits are LSB first
 * from HEADER_SIZE; a sidecar of exactly HEADER_SIZE bytes has every
 * bit 0.  The invariants, besides no crash, hang or sanitizer report:
 *
 * 1. Repair never changes that view (it may only clear bits past the
 *    disk, size a fresh bitmap and set ALL_ALLOCATED), and never
 *    touches the image or the backing file.
 * 2. Repair is idempotent: a second repair finds nothing to fix and
 *    no new problem.
 * 3. A sidecar that checks clean loads (addcow_load_bitmap), as the
 *    filter will load it.
 * 4. After the writes and a flush, the view equals the shadow disk,
 *    the bitmap loads back equal to the store's, ALL_ALLOCATED is set
 *    only with every bit, and the check is clean and counts the bits.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-check.h"
#include "addcow-file.h"
#include "addcow-store.h"
#include "fuzz-util.h"
#include "qad-error.h"

#define SIDECAR "fuzz.add-cow"
#define MAX_NAME 64

static void
quiet (const char *msg)
{
}

static void
quiet_problem (void *opaque, const char *msg)
{
  fuzz_trace ("addcow: check: %s", msg);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* The files made for one input. */
struct files {
  char sidecar[PATH_MAX];
  char image_name[MAX_NAME + 1], backing_name[MAX_NAME + 1];
  uint8_t *image, *backing;     /* contents, NULL when not made here */
  uint64_t disk, backing_size;
  bool has_backing;             /* the header names a backing file */
};

static bool
plain_name (const char *s)
{
  size_t i, n = strlen (s);

  if (n == 0 || n > MAX_NAME || strcmp (s, ".") == 0 ||
      strcmp (s, "..") == 0 || strcmp (s, SIDECAR) == 0)
    return false;
  for (i = 0; i < n; ++i)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
          s[i] == '-'))
      return false;
  return true;
}

static uint8_t *
make_file (struct fuzz_rng *r, const char *name, uint64_t size)
{
  char path[PATH_MAX];
  uint8_t *d = malloc (size ? size : 1);

  if (d == NULL)
    abort ();
  fuzz_fill (r, d, size);
  fuzz_write_file (fuzz_path (path, sizeof path, name), d, size);
  return d;
}

static uint64_t
pick_size (struct fuzz_rng *r, uint64_t cs, uint64_t usual)
{
  const uint64_t sizes[] = {
    usual, usual, usual, 0, 1, cs - 1, 3 * cs + 5, 256 * 1024,
    usual + 7, 2 * usual,
  };
  return sizes[fuzz_below (r, sizeof sizes / sizeof sizes[0])];
}

/* Make the image and backing files the header names. */
static void
make_files (struct fuzz_rng *r, const struct addcow_header *h,
            struct files *f)
{
  const uint64_t cs = UINT64_C (1) << h->cluster_bits;

  f->has_backing = h->backing_file != NULL;
  if (plain_name (h->image_file)) {
    strcpy (f->image_name, h->image_file);
    f->disk = pick_size (r, cs, 1 << 20);
    f->image = make_file (r, f->image_name, f->disk);
  }
  if (h->backing_file && plain_name (h->backing_file)) {
    strcpy (f->backing_name, h->backing_file);
    f->backing_size = pick_size (r, cs, 768 * 1024 + 100);
    f->backing = make_file (r, f->backing_name, f->backing_size);
  }
}

static void
remove_files (struct files *f)
{
  char path[PATH_MAX];

  if (f->image)
    unlink (fuzz_path (path, sizeof path, f->image_name));
  if (f->backing)
    unlink (fuzz_path (path, sizeof path, f->backing_name));
  free (f->image);
  free (f->backing);
}

/* The guest-visible disk (f->disk bytes) into OUT; false when the
 * files do not define it (bad header, truncated bitmap, a file not
 * made here).
 */
static bool
view (const struct files *f, uint8_t *out)
{
  struct addcow_header h;
  uint64_t fsz, n, need, have, c, cs;
  uint8_t *bits = NULL;
  bool all, ok = false;
  int fd;

  if (f->image == NULL || (f->has_backing && f->backing == NULL))
    return false;
  fd = open (f->sidecar, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    abort ();
  if (addcow_read_header (fd, f->sidecar, &h, &fsz) == -1)
    goto out;
  cs = UINT64_C (1) << h.cluster_bits;
  all = h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;
  n = addcow_nr_clusters (f->disk, h.cluster_bits);
  need = addcow_bitmap_size (f->disk, h.cluster_bits);
  have = fsz - h.header_size;
  if (!all) {
    if (have != 0 && have < need)
      goto out_free;
    bits = calloc (need + 1, 1);
    if (bits == NULL)
      abort ();
    if (have && full_pread (fd, bits, need, h.header_size) == -1)
      abort ();
  }
  for (c = 0; c < n; ++c) {
    uint64_t off = c * cs, len = f->disk - off < cs ? f->disk - off : cs;
    uint64_t i;

    if (all || bit_test (bits, c))
      memcpy (out + off, f->image + off, len);
    else
      for (i = off; i < off + len; ++i)
        out[i] = f->backing && i < f->backing_size ? f->backing[i] : 0;
  }
  ok = true;
 out_free:
  free (bits);
  addcow_header_free (&h);
 out:
  close (fd);
  return ok;
}

static bool
check (const struct files *f, bool repair, struct addcow_check_result *res)
{
  return addcow_check (f->sidecar, repair, quiet_problem, NULL, res) == 0;
}

/* The filter's write path: the image written here, the bits through
 * common/addcow's store in one of its three persistence modes.
 */
struct writer {
  const struct files *f;
  struct addcow_header h;
  struct addcow_store st;
  int fd, ifd;
  uint64_t n, cs;
  uint8_t *shadow;
};

static int
flush_image (void *opaque)
{
  struct writer *w = opaque;
  return fdatasync (w->ifd);
}

static void
flush (struct writer *w)
{
  if (addcow_store_flush (&w->st, flush_image, w) == -1)
    fuzz_fail ("addcow_store_flush failed: %s", strerror (errno));
}

static void
write_op (struct writer *w, struct fuzz_rng *r)
{
  const uint64_t disk = w->f->disk;
  uint64_t off, len, c, first, last;
  bool zero = fuzz_below (r, 4) == 0;
  uint8_t *buf;

  fuzz_range (r, disk, w->cs, &off, &len);
  fuzz_trace ("addcow: %s offset=%" PRIu64 " len=%" PRIu64,
              zero ? "zero" : "write", off, len);
  buf = malloc (len);
  if (buf == NULL)
    abort ();
  if (zero)
    memset (buf, 0, len);
  else
    fuzz_fill (r, buf, len);
  first = off / w->cs;
  last = (off + len - 1) / w->cs;
  /* Copy-up: the whole cluster from the old view, with the new data. */
  memcpy (w->shadow + off, buf, len);
  for (c = first; c <= last; ++c) {
    uint64_t co = c * w->cs, cl = disk - co < w->cs ? disk - co : w->cs;
    if (full_pwrite (w->ifd, w->shadow + co, cl, co) == -1)
      fuzz_fail ("writing the image: %s", strerror (errno));
    memcpy (w->f->image + co, w->shadow + co, cl);
  }
  free (buf);
  /* AT_WRITE wants the data durable before the bits. */
  if (w->st.mode == ADDCOW_PERSIST_AT_WRITE && fdatasync (w->ifd) == -1)
    abort ();
  if (addcow_store_set (&w->st, first, last + 1) == -1)
    fuzz_fail ("addcow_store_set failed: %s", strerror (errno));
  if (fuzz_below (r, 3) == 0)
    flush (w);
}

/* Invariant 4. */
static void
write_phase (const struct files *f, struct fuzz_rng *r)
{
  static const enum addcow_persist_mode modes[] = {
    ADDCOW_PERSIST_AT_FLUSH, ADDCOW_PERSIST_AT_WRITE, ADDCOW_PERSIST_AT_CLOSE,
  };
  struct writer w = { .f = f };
  struct addcow_store_io io;
  struct addcow_check_result res;
  char ipath[PATH_MAX];
  uint64_t fsz, blen, bmlen;
  uint8_t *bm, *bm2, *after;
  bool fresh;
  unsigned i, nops;
  struct stat st;

  w.fd = open (f->sidecar, O_RDWR | O_CLOEXEC);
  if (w.fd == -1 || addcow_read_header (w.fd, f->sidecar, &w.h, &fsz) == -1)
    fuzz_fail ("a sidecar that checked clean does not open");
  if (w.h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)
    goto out;
  if (addcow_load_bitmap (w.fd, f->sidecar, &w.h, fsz, f->disk, &bm,
                          &bmlen, &fresh) == -1)
    fuzz_fail ("a sidecar that checked clean does not load");
  if (fresh && ftruncate (w.fd, w.h.header_size + bmlen) == -1)
    abort ();
  w.cs = UINT64_C (1) << w.h.cluster_bits;
  w.n = addcow_nr_clusters (f->disk, w.h.cluster_bits);
  addcow_store_io_fd (&io, &w.fd);
  if (addcow_store_init (&w.st, f->sidecar, &io, modes[fuzz_below (r, 3)],
                         w.h.header_size, w.h.compat_features, bm, bmlen,
                         w.n) == -1)
    abort ();
  w.shadow = malloc (f->disk);
  after = malloc (f->disk);
  w.ifd = open (fuzz_path (ipath, sizeof ipath, f->image_name),
                O_RDWR | O_CLOEXEC);
  if (w.shadow == NULL || after == NULL || w.ifd == -1)
    abort ();
  if (!view (f, w.shadow))
    fuzz_fail ("a sidecar that checked clean has no defined view");

  nops = 1 + fuzz_below (r, 16);
  fuzz_trace ("addcow: persistence mode %d, %u operations", w.st.mode, nops);
  for (i = 0; i < nops; ++i)
    write_op (&w, r);
  flush (&w);
  close (w.ifd);

  if (!view (f, after) || memcmp (after, w.shadow, f->disk) != 0)
    fuzz_fail ("after the writes the disk differs from the shadow");
  if (!check (f, false, &res) || res.corruptions)
    fuzz_fail ("the check after the writes is not clean");
  if (res.in_image != w.st.nr_set)
    fuzz_fail ("the check counts %" PRIu64 " clusters in the image, the "
               "store %" PRIu64, res.in_image, w.st.nr_set);
  addcow_header_free (&w.h);
  if (addcow_read_header (w.fd, f->sidecar, &w.h, &fsz) == -1)
    fuzz_fail ("the sidecar does not open after the writes");
  if ((w.h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) &&
      w.st.nr_set != w.n)
    fuzz_fail ("ALL_ALLOCATED is set with %" PRIu64 " of %" PRIu64
               " bits", w.st.nr_set, w.n);
  if (!(w.h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)) {
    if (fstat (w.fd, &st) == -1 ||
        addcow_load_bitmap (w.fd, f->sidecar, &w.h, st.st_size, f->disk,
                            &bm2, &blen, &fresh) == -1 ||
        blen != bmlen || memcmp (bm2, w.st.bitmap, blen) != 0)
      fuzz_fail ("the bitmap does not load back as written");
    free (bm2);
  }
  free (after);
  free (w.shadow);
  addcow_store_free (&w.st);
 out:
  addcow_header_free (&w.h);
  close (w.fd);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct files f = { 0 };
  struct addcow_check_result r1, r2, r3;
  struct addcow_header h;
  struct fuzz_rng r;
  uint8_t *before = NULL, *after = NULL;
  uint64_t fsz;
  bool have_view;
  int fd;

  qad_set_error_handler (getenv ("FUZZ_TRACE") ? NULL : quiet);
  fuzz_rng_init (&r, data, size);
  fuzz_path (f.sidecar, sizeof f.sidecar, SIDECAR);
  fuzz_write_file (f.sidecar, data, size);

  fd = open (f.sidecar, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    abort ();
  if (addcow_read_header (fd, f.sidecar, &h, &fsz) == -1) {
    close (fd);
    (void) check (&f, true, &r1);
    return 0;
  }
  close (fd);
  make_files (&r, &h, &f);
  addcow_header_free (&h);

  before = malloc (f.disk + 1);
  after = malloc (f.disk + 1);
  if (before == NULL || after == NULL)
    abort ();
  have_view = view (&f, before);

  (void) check (&f, false, &r1);
  if (!check (&f, true, &r2))
    goto out;

  /* Invariant 1. */
  if (have_view && (!view (&f, after) ||
                    memcmp (before, after, f.disk) != 0))
    fuzz_fail ("repair changed what the guest sees");
  if (f.image) {
    char p[PATH_MAX];
    uint8_t *now = malloc (f.disk + 1);
    fd = open (fuzz_path (p, sizeof p, f.image_name), O_RDONLY);
    if (now == NULL || fd == -1 || full_pread (fd, now, f.disk, 0) == -1 ||
        memcmp (now, f.image, f.disk) != 0)
      fuzz_fail ("repair changed the image file");
    close (fd);
    free (now);
  }

  /* Invariant 2. */
  if (!check (&f, true, &r3) || r3.repaired)
    fuzz_fail ("a second repair fixed %" PRIu64 " more problem(s)",
               r3.repaired);
  /* Fewer is fine: a missing backing file stops counting once the
   * repair set ALL_ALLOCATED.
   */
  if (r3.corruptions > r2.corruptions)
    fuzz_fail ("repair reported %" PRIu64 " problems left, a second check %"
               PRIu64, r2.corruptions, r3.corruptions);

  /* Invariants 3 and 4. */
  if (r3.corruptions == 0 && f.image && f.disk > 0 &&
      (!f.has_backing || f.backing))
    write_phase (&f, &r);
 out:
  free (before);
  free (after);
  remove_files (&f);
  return 0;
}
