/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Test helper for the add-cow filter (a libnbd client).
 *
 *   addcow-workload run URI REF NOPS SEED
 *      Seeded random workload: batches of up to 8 concurrent,
 *      non-overlapping writes (unaligned, crossing clusters, some with
 *      FUA) and zeroes (some MAY_TRIM / FAST_ZERO), flushes and
 *      checked reads, applied both to the export and to the reference
 *      raw file REF (which must start equal to the export).  Ends
 *      by comparing the whole export with REF.  Prints op counts.
 *
 *   addcow-workload compare URI REF
 *      The export equals REF byte for byte.
 *
 *   addcow-workload check-image SIDECAR IMAGE REF
 *      Every cluster whose bit is set (every cluster if ALL_ALLOCATED)
 *      is identical in IMAGE and REF.  Prints the number of such
 *      clusters.
 *
 *   addcow-workload crash URI DIR SEED
 *      Tagged sector-aligned writes and flushes until the server dies.
 *      DIR/flushed.ref is the expected disk as of the last completed
 *      flush (start: the initial disk), DIR/flushed.id the last op id
 *      it includes.  Exits 0 when the connection is lost.
 *
 *   addcow-workload crash-verify URI DIR
 *      After a restart: every 512-byte sector equals DIR/flushed.ref
 *      or is a valid tagged sector written after the last flush (so
 *      flushed writes survived and nothing unwritten appeared).  Then
 *      makes the current disk the new DIR/flushed.ref.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#include "addcow.h"
#include "addcow-file.h"
#include "byte-swapping.h"
#include "full-io.h"

#define MAX_BATCH 8
#define SECTOR 512

static uint64_t rng_state;

static uint64_t
rnd (void)
{
  /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * UINT64_C (2685821657736338717);
}

static uint64_t
rnd_below (uint64_t n)
{
  return n ? rnd () % n : 0;
}

static void
die_nbd (const char *what)
{
  fprintf (stderr, "addcow-workload: %s: %s\n", what, nbd_get_error ());
  exit (EXIT_FAILURE);
}

static struct nbd_handle *
connect_uri (const char *uri)
{
  struct nbd_handle *nbd = nbd_create ();

  if (nbd == NULL || nbd_connect_uri (nbd, uri) == -1)
    die_nbd ("connect");
  return nbd;
}

static uint8_t *
read_file (const char *path, uint64_t *size)
{
  struct stat st;
  uint8_t *buf;
  int fd = open (path, O_RDONLY);

  if (fd == -1 || fstat (fd, &st) == -1) {
    perror (path);
    exit (EXIT_FAILURE);
  }
  buf = malloc (st.st_size ? st.st_size : 1);
  if (buf == NULL || full_pread (fd, buf, st.st_size, 0) == -1) {
    perror (path);
    exit (EXIT_FAILURE);
  }
  close (fd);
  *size = st.st_size;
  return buf;
}

static void
write_file_atomic (const char *path, const void *buf, uint64_t size)
{
  char tmp[4096];
  int fd;

  snprintf (tmp, sizeof tmp, "%s.tmp", path);
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd == -1 || full_pwrite (fd, buf, size, 0) == -1 || close (fd) == -1 ||
      rename (tmp, path) == -1) {
    perror (path);
    exit (EXIT_FAILURE);
  }
}

static uint8_t *
read_export (struct nbd_handle *nbd, uint64_t size)
{
  uint8_t *buf = malloc (size ? size : 1);
  uint64_t off;

  if (buf == NULL) {
    perror ("malloc");
    exit (EXIT_FAILURE);
  }
  for (off = 0; off < size; off += 4 << 20) {
    uint64_t n = size - off < (4 << 20) ? size - off : (4 << 20);
    if (nbd_pread (nbd, buf + off, n, off, 0) == -1)
      die_nbd ("pread");
  }
  return buf;
}

static int
compare_bufs (const uint8_t *a, const uint8_t *b, uint64_t size,
              const char *what)
{
  uint64_t i;

  for (i = 0; i < size; ++i)
    if (a[i] != b[i]) {
      fprintf (stderr, "addcow-workload: %s: first difference at byte %"
               PRIu64 " (cluster %" PRIu64 " of 64K): export 0x%02x, "
               "reference 0x%02x\n", what, i, i >> 16, a[i], b[i]);
      return -1;
    }
  return 0;
}

/* ---- run ---- */

enum kind { W, Z };
struct op {
  enum kind kind;
  uint64_t off, len;
  uint32_t flags;
  uint8_t *data;
  int64_t cookie;
};

static bool
overlaps_any (const struct op *ops, size_t n, uint64_t off, uint64_t len)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (off < ops[i].off + ops[i].len && ops[i].off < off + len)
      return true;
  return false;
}

static uint64_t
pick_len (uint64_t size)
{
  uint64_t len;

  switch (rnd_below (4)) {
  case 0: len = 1 + rnd_below (SECTOR * 2); break;     /* tiny */
  case 1: len = 1 + rnd_below (65536); break;          /* < cluster */
  case 2: len = 65536 * (1 + rnd_below (3)); break;    /* whole clusters */
  default: len = 1 + rnd_below (65536 * 3); break;     /* crossing */
  }
  return len > size ? size : len;
}

static uint64_t
pick_off (uint64_t size, uint64_t len)
{
  uint64_t off = rnd_below (size - len + 1);

  /* Half the time cluster- or sector-aligned. */
  switch (rnd_below (4)) {
  case 0: off &= ~UINT64_C (65535); break;
  case 1: off &= ~UINT64_C (SECTOR - 1); break;
  default: break;
  }
  if (off + len > size)
    off = size - len;
  return off;
}

static int
do_run (const char *uri, const char *refpath, long nops, uint64_t seed)
{
  struct nbd_handle *nbd = connect_uri (uri);
  uint64_t size, refsize;
  uint8_t *ref = read_file (refpath, &refsize);
  long done = 0;
  unsigned long writes = 0, unaligned = 0, zeroes = 0, fast_zero_refused = 0;
  unsigned long flushes = 0, fuas = 0, reads = 0, batches = 0, maxbatch = 0;
  int fd;

  rng_state = seed * 2654435761u + 1;
  size = nbd_get_size (nbd);
  if ((int64_t) size == -1)
    die_nbd ("get_size");
  if (size != refsize) {
    fprintf (stderr, "addcow-workload: export is %" PRIu64 " bytes, "
             "reference %" PRIu64 "\n", size, refsize);
    return EXIT_FAILURE;
  }

  while (done < nops) {
    unsigned r = rnd_below (100);

    if (r < 8) {
      if (nbd_flush (nbd, 0) == -1)
        die_nbd ("flush");
      flushes++;
      done++;
    }
    else if (r < 20) {
      /* Checked read. */
      uint64_t len = pick_len (size), off = pick_off (size, len);
      uint8_t *buf = malloc (len);
      if (nbd_pread (nbd, buf, len, off, 0) == -1)
        die_nbd ("pread");
      if (compare_bufs (buf, ref + off, len, "read during workload") == -1) {
        fprintf (stderr, "  (read off=%" PRIu64 " len=%" PRIu64 ")\n",
                 off, len);
        return EXIT_FAILURE;
      }
      free (buf);
      reads++;
      done++;
    }
    else {
      /* A batch of concurrent, non-overlapping writes and zeroes. */
      struct op ops[MAX_BATCH];
      size_t n = 1 + rnd_below (MAX_BATCH), i, k = 0;
      uint64_t near = rnd_below (size);

      for (i = 0; i < n && done < nops; ++i) {
        struct op *o = &ops[k];
        uint64_t len = pick_len (size), off;
        int tries;
        for (tries = 0; tries < 20; ++tries) {
          /* Bias towards the same clusters, to race copy-ups. */
          off = rnd_below (2) ? pick_off (size, len)
            : (near + rnd_below (65536 * 2)) % (size - len + 1);
          if (!overlaps_any (ops, k, off, len))
            break;
        }
        if (tries == 20)
          break;
        o->off = off;
        o->len = len;
        o->flags = 0;
        o->data = NULL;
        if (rnd_below (100) < 75) {
          uint64_t j;
          o->kind = W;
          o->data = malloc (len);
          for (j = 0; j < len; ++j)
            o->data[j] = rnd () & 0xff;
          if (rnd_below (10) == 0)
            o->flags |= LIBNBD_CMD_FLAG_FUA;
          o->cookie = nbd_aio_pwrite (nbd, o->data, len, off,
                                      NBD_NULL_COMPLETION, o->flags);
          writes++;
          if ((off | len) & (SECTOR - 1))
            unaligned++;
        }
        else {
          o->kind = Z;
          if (rnd_below (2))
            o->flags |= LIBNBD_CMD_FLAG_NO_HOLE;
          if (rnd_below (4) == 0 && nbd_can_fast_zero (nbd) == 1)
            o->flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
          if (rnd_below (10) == 0)
            o->flags |= LIBNBD_CMD_FLAG_FUA;
          o->cookie = nbd_aio_zero (nbd, len, off, NBD_NULL_COMPLETION,
                                    o->flags);
          zeroes++;
        }
        if (o->flags & LIBNBD_CMD_FLAG_FUA)
          fuas++;
        if (o->cookie == -1)
          die_nbd ("aio command");
        k++;
        done++;
      }
      batches++;
      if (k > maxbatch)
        maxbatch = k;
      for (i = 0; i < k; ++i) {
        struct op *o = &ops[i];
        int rr;
        while ((rr = nbd_aio_command_completed (nbd, o->cookie)) == 0)
          if (nbd_poll (nbd, -1) == -1)
            die_nbd ("poll");
        if (rr == -1) {
          if (o->kind == Z && (o->flags & LIBNBD_CMD_FLAG_FAST_ZERO) &&
              nbd_get_errno () == ENOTSUP) {
            fast_zero_refused++;
            continue;           /* nothing changed */
          }
          die_nbd (o->kind == W ? "pwrite" : "zero");
        }
        if (o->kind == W)
          memcpy (ref + o->off, o->data, o->len);
        else
          memset (ref + o->off, 0, o->len);
        free (o->data);
      }
    }
  }

  {
    uint8_t *all = read_export (nbd, size);
    if (compare_bufs (all, ref, size, "final comparison") == -1)
      return EXIT_FAILURE;
    free (all);
  }
  if (nbd_flush (nbd, 0) == -1)
    die_nbd ("flush");
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  fd = open (refpath, O_WRONLY);
  if (fd == -1 || full_pwrite (fd, ref, size, 0) == -1 || close (fd) == -1) {
    perror (refpath);
    return EXIT_FAILURE;
  }
  printf ("ops=%ld writes=%lu unaligned=%lu zeroes=%lu fast_zero_refused=%lu "
          "fua=%lu flushes=%lu reads=%lu batches=%lu max_in_flight=%lu\n",
          done, writes, unaligned, zeroes, fast_zero_refused, fuas, flushes,
          reads, batches, maxbatch);
  free (ref);
  return 0;
}

static int
do_compare (const char *uri, const char *refpath)
{
  struct nbd_handle *nbd = connect_uri (uri);
  uint64_t size, refsize;
  uint8_t *ref = read_file (refpath, &refsize), *all;
  int r;

  size = nbd_get_size (nbd);
  if (size != refsize) {
    fprintf (stderr, "addcow-workload: export is %" PRIu64 " bytes, "
             "reference %" PRIu64 "\n", size, refsize);
    return EXIT_FAILURE;
  }
  all = read_export (nbd, size);
  r = compare_bufs (all, ref, size, "compare");
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  free (all);
  free (ref);
  return r == 0 ? 0 : EXIT_FAILURE;
}

static int
do_check_image (const char *sidecar, const char *image, const char *refpath)
{
  struct addcow_header h;
  uint64_t fsz, imgsize, refsize, bmlen, c, n, nset = 0;
  uint8_t *img = read_file (image, &imgsize);
  uint8_t *ref = read_file (refpath, &refsize);
  uint8_t *bm = NULL;
  bool fresh, all;
  int fd = open (sidecar, O_RDONLY);

  if (fd == -1 || addcow_read_header (fd, sidecar, &h, &fsz) == -1)
    return EXIT_FAILURE;
  if (imgsize != refsize) {
    fprintf (stderr, "image %" PRIu64 " bytes, reference %" PRIu64 "\n",
             imgsize, refsize);
    return EXIT_FAILURE;
  }
  all = h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;
  if (!all && addcow_load_bitmap (fd, sidecar, &h, fsz, imgsize, &bm, &bmlen,
                                  &fresh) == -1)
    return EXIT_FAILURE;
  n = addcow_nr_clusters (imgsize, h.cluster_bits);
  for (c = 0; c < n; ++c) {
    uint64_t start = c << h.cluster_bits;
    uint64_t len = imgsize - start < (UINT64_C (1) << h.cluster_bits)
      ? imgsize - start : UINT64_C (1) << h.cluster_bits;
    if (!all && !bit_test (bm, c))
      continue;
    nset++;
    if (memcmp (img + start, ref + start, len) != 0) {
      fprintf (stderr, "addcow-workload: cluster %" PRIu64 " has its bit set "
               "but the raw image differs from the reference there\n", c);
      return EXIT_FAILURE;
    }
  }
  printf ("clusters=%" PRIu64 " in_image=%" PRIu64 " all_allocated=%d\n",
          n, nset, all);
  free (bm);
  free (img);
  free (ref);
  addcow_header_free (&h);
  close (fd);
  return 0;
}

/* ---- crash ---- */

#define TAG_MAGIC "ACWT"

static void
make_tagged (uint8_t *sec, uint64_t op_id, uint64_t sector)
{
  uint64_t saved = rng_state;
  size_t i;

  memcpy (sec, TAG_MAGIC, 4);
  store_le64 (sec + 4, op_id);
  store_le64 (sec + 12, sector);
  rng_state = op_id * 0x9e3779b97f4a7c15 + sector + 1;
  for (i = 20; i < SECTOR; ++i)
    sec[i] = rnd () & 0xff;
  rng_state = saved;
}

static char *
path_in (const char *dir, const char *name)
{
  char *p;
  if (asprintf (&p, "%s/%s", dir, name) == -1)
    exit (EXIT_FAILURE);
  return p;
}

static uint64_t
read_id (const char *dir)
{
  char *p = path_in (dir, "flushed.id");
  FILE *fp = fopen (p, "r");
  unsigned long long id = 0;

  if (fp) {
    if (fscanf (fp, "%llu", &id) != 1)
      id = 0;
    fclose (fp);
  }
  free (p);
  return id;
}

static void
write_id (const char *dir, uint64_t id)
{
  char *p = path_in (dir, "flushed.id");
  char buf[64];
  int n = snprintf (buf, sizeof buf, "%" PRIu64 "\n", id);
  write_file_atomic (p, buf, n);
  free (p);
}

static int
do_crash (const char *uri, const char *dir, uint64_t seed)
{
  struct nbd_handle *nbd = connect_uri (uri);
  char *refpath = path_in (dir, "flushed.ref");
  uint64_t size, refsize;
  uint8_t *ref = read_file (refpath, &refsize);
  uint64_t id = read_id (dir) + 1, last_flushed = id - 1;
  unsigned long writes = 0, flushes = 0;
  uint8_t *before;

  rng_state = seed * 2654435761u + 7;
  size = nbd_get_size (nbd);
  if (size != refsize)
    return EXIT_FAILURE;
  before = malloc (size);
  if (before == NULL)
    return EXIT_FAILURE;
  for (;;) {
    struct op ops[MAX_BATCH];
    size_t n = 1 + rnd_below (MAX_BATCH), i, k = 0;
    uint64_t nsec = size / SECTOR;
    uint64_t batch_first = id;
    /* Sometimes a flush in flight with the batch's writes: it only
     * covers what completed before it was sent (the earlier batches),
     * but it races the copy-ups of this batch: a bit persisted before
     * its data was written would show up after the crash.
     */
    bool concurrent_flush = rnd_below (3) == 0;
    int64_t flush_cookie = -1;

    if (concurrent_flush)
      memcpy (before, ref, size);
    for (i = 0; i < n; ++i) {
      if (concurrent_flush && i == n / 2) {
        flush_cookie = nbd_aio_flush (nbd, NBD_NULL_COMPLETION, 0);
        if (flush_cookie == -1)
          goto lost;
      }
      uint64_t len = 1 + rnd_below (64 * 3), off = rnd_below (nsec), s;
      int tries;
      for (tries = 0; tries < 20; ++tries) {
        off = rnd_below (nsec);
        if (off + len > nsec)
          len = nsec - off;
        if (!overlaps_any (ops, k, off * SECTOR, len * SECTOR))
          break;
      }
      if (tries == 20)
        break;
      ops[k].off = off * SECTOR;
      ops[k].len = len * SECTOR;
      ops[k].data = malloc (len * SECTOR);
      for (s = 0; s < len; ++s)
        make_tagged (ops[k].data + s * SECTOR, id, off + s);
      ops[k].cookie = nbd_aio_pwrite (nbd, ops[k].data, ops[k].len,
                                      ops[k].off, NBD_NULL_COMPLETION, 0);
      if (ops[k].cookie == -1)
        goto lost;
      k++;
      id++;
    }
    for (i = 0; i < k; ++i) {
      int rr;
      while ((rr = nbd_aio_command_completed (nbd, ops[i].cookie)) == 0)
        if (nbd_poll (nbd, -1) == -1)
          goto lost;
      if (rr == -1)
        goto lost;
      memcpy (ref + ops[i].off, ops[i].data, ops[i].len);
      free (ops[i].data);
      writes++;
    }
    if (flush_cookie != -1) {
      int rr;
      while ((rr = nbd_aio_command_completed (nbd, flush_cookie)) == 0)
        if (nbd_poll (nbd, -1) == -1)
          goto lost;
      if (rr == -1)
        goto lost;
      write_file_atomic (refpath, before, size);
      write_id (dir, batch_first - 1);
      last_flushed = batch_first - 1;
      flushes++;
    }
    if (rnd_below (4) == 0) {
      if (nbd_flush (nbd, 0) == -1)
        goto lost;
      /* Everything up to id-1 is flushed. */
      write_file_atomic (refpath, ref, size);
      write_id (dir, id - 1);
      last_flushed = id - 1;
      flushes++;
    }
  }
 lost:
  printf ("connection lost after %lu writes, %lu flushes "
          "(last flushed op id %" PRIu64 ")\n", writes, flushes, last_flushed);
  return 0;
}

static int
do_crash_verify (const char *uri, const char *dir)
{
  struct nbd_handle *nbd = connect_uri (uri);
  char *refpath = path_in (dir, "flushed.ref");
  uint64_t size, refsize, s, same = 0, newer = 0;
  uint8_t *ref = read_file (refpath, &refsize), *all;
  uint64_t flushed_id = read_id (dir);
  uint8_t want[SECTOR];
  uint64_t max_id = flushed_id;

  size = nbd_get_size (nbd);
  if (size != refsize)
    return EXIT_FAILURE;
  all = read_export (nbd, size);
  for (s = 0; s < size / SECTOR; ++s) {
    const uint8_t *got = all + s * SECTOR;
    uint64_t op_id;
    if (memcmp (got, ref + s * SECTOR, SECTOR) == 0) {
      same++;
      continue;
    }
    if (memcmp (got, TAG_MAGIC, 4) != 0) {
      fprintf (stderr, "addcow-workload: sector %" PRIu64 " (offset %"
               PRIu64 ") holds data that was never written there and is "
               "not the flushed content\n", s, s * SECTOR);
      return EXIT_FAILURE;
    }
    op_id = load_le64 (got + 4);
    make_tagged (want, op_id, s);
    if (memcmp (got, want, SECTOR) != 0 || op_id <= flushed_id) {
      fprintf (stderr, "addcow-workload: sector %" PRIu64 " holds op %"
               PRIu64 " (last flushed op %" PRIu64 "): %s\n", s, op_id,
               flushed_id,
               op_id <= flushed_id ? "a flushed write was lost"
               : "corrupt tagged sector");
      return EXIT_FAILURE;
    }
    newer++;
    if (op_id > max_id)
      max_id = op_id;
  }
  printf ("sectors=%" PRIu64 " as_flushed=%" PRIu64
          " unflushed_but_written=%" PRIu64 "\n", size / SECTOR, same, newer);
  write_file_atomic (refpath, all, size);
  write_id (dir, max_id);
  nbd_shutdown (nbd, 0);
  nbd_close (nbd);
  free (all);
  free (ref);
  free (refpath);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc == 6 && strcmp (argv[1], "run") == 0)
    return do_run (argv[2], argv[3], atol (argv[4]), strtoull (argv[5], NULL, 0));
  if (argc == 4 && strcmp (argv[1], "compare") == 0)
    return do_compare (argv[2], argv[3]);
  if (argc == 5 && strcmp (argv[1], "check-image") == 0)
    return do_check_image (argv[2], argv[3], argv[4]);
  if (argc == 5 && strcmp (argv[1], "crash") == 0)
    return do_crash (argv[2], argv[3], strtoull (argv[4], NULL, 0));
  if (argc == 4 && strcmp (argv[1], "crash-verify") == 0)
    return do_crash_verify (argv[2], argv[3]);
  fprintf (stderr, "usage: see the comment atop addcow-workload.c\n");
  return EXIT_FAILURE;
}
