/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of the write path without a server, so that it runs under
 * ASan/UBSan and valgrind: random writes, zeroes (with and without
 * may_trim), trims and flushes against an in-memory model, with and
 * without a raw backing file, then the consistency check must find
 * nothing, and four threads writing interleaved chunks of the same
 * clusters must produce the exact expected image.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"

#define SIZE (4 * 1024 * 1024 + 512)   /* not a cluster multiple */
#define CS 4096

static char dir[] = "/tmp/test-qed-write.XXXXXX";
static unsigned rng = 12345;

static unsigned
rnd (unsigned n)
{
  rng = rng * 1103515245 + 12345;
  return (rng >> 8) % n;
}

static char *
path_of (const char *name)
{
  static char buf[2][256];
  static int i;
  i = !i;
  snprintf (buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static struct qed_image *
open_rw (const char *name)
{
  struct qed_open_options o = { .readonly = false, .l2_cache_bytes = 16384 };
  struct qed_image *img = qed_open (path_of (name), &o);
  assert (img != NULL);
  return img;
}

static void
verify (struct qed_image *img, const unsigned char *model)
{
  unsigned char *buf = malloc (SIZE);
  assert (qed_pread (img, buf, SIZE, 0) == 0);
  if (memcmp (buf, model, SIZE) != 0) {
    size_t i;
    for (i = 0; buf[i] == model[i]; ++i)
      ;
    fprintf (stderr, "FAIL: byte %zu is %d, expected %d\n", i, buf[i],
             model[i]);
    exit (EXIT_FAILURE);
  }
  free (buf);
}

static void
check_clean (struct qed_image *img)
{
  struct qed_check_result res;
  assert (qed_check (img, false, &res, NULL, NULL) == 0);
  if (res.corruptions || res.leaks) {
    fprintf (stderr, "FAIL: check: %llu corruptions, %llu leaks\n",
             (unsigned long long) res.corruptions,
             (unsigned long long) res.leaks);
    exit (EXIT_FAILURE);
  }
}

static void
random_workload (const char *name, unsigned char *model, int has_backing)
{
  struct qed_image *img = open_rw (name);
  unsigned char *data = malloc (3 * CS);
  int i;

  for (i = 0; i < 600; ++i) {
    uint64_t off = rnd (SIZE);
    uint64_t len = 1 + rnd (3 * CS);
    unsigned op = rnd (10);

    if (len > SIZE - off)
      len = SIZE - off;
    if (op < 5) {
      memset (data, 1 + rnd (255), len);
      assert (qed_pwrite (img, data, len, off, rnd (8) == 0) == 0);
      memcpy (model + off, data, len);
    }
    else if (op < 8) {
      assert (qed_zero (img, len, off, rnd (2), false, false) == 0);
      memset (model + off, 0, len);
    }
    else if (op < 9) {
      /* Trim: whole clusters read as zero afterwards. */
      uint64_t a = (off + CS - 1) / CS * CS, b = (off + len) / CS * CS;
      if (off + len == SIZE)
        b = SIZE;
      assert (qed_trim (img, len, off, false) == 0);
      if (a < b)
        memset (model + a, 0, b - a);
    }
    else
      assert (qed_flush (img) == 0);
    if (i % 100 == 0)
      verify (img, model);
  }
  verify (img, model);
  check_clean (img);
  assert (qed_close (img) == 0);

  /* Reopened: same contents, NEED_CHECK clear, still consistent. */
  img = open_rw (name);
  assert ((img->header.features & QED_F_NEED_CHECK) == 0);
  assert (has_backing == (img->backing != NULL));
  verify (img, model);
  check_clean (img);
  qed_close (img);
  free (data);
}

struct writer {
  struct qed_image *img;
  unsigned t;
};

#define CHUNK 1000
#define THREADS 4

static void *
writer_thread (void *arg)
{
  struct writer *w = arg;
  unsigned char buf[CHUNK];
  uint64_t k;

  for (k = w->t; k * CHUNK < SIZE; k += THREADS) {
    uint64_t len = k * CHUNK + CHUNK > SIZE ? SIZE - k * CHUNK : CHUNK;
    memset (buf, (int) (k % 255 + 1), len);
    assert (qed_pwrite (w->img, buf, len, k * CHUNK, false) == 0);
  }
  return NULL;
}

int
main (void)
{
  struct qed_create_options co = { .size = SIZE, .cluster_size = CS,
                                   .table_size = 1 };
  unsigned char *model = calloc (1, SIZE);
  struct writer w[THREADS];
  pthread_t th[THREADS];
  struct qed_image *img;
  uint64_t k;
  unsigned t;
  int fd;

  assert (mkdtemp (dir) != NULL);

  /* No backing file. */
  assert (qed_create (path_of ("a.qed"), &co) == 0);
  random_workload ("a.qed", model, 0);

  /* Over a raw backing file smaller than the image. */
  fd = open (path_of ("base.raw"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  for (k = 0; k < SIZE / 2; ++k)
    model[k] = (unsigned char) (k * 7 + 3);
  memset (model + SIZE / 2, 0, SIZE - SIZE / 2);
  assert (full_pwrite (fd, model, SIZE / 2, 0) == 0);
  close (fd);
  co.backing = "base.raw";
  co.backing_format = "raw";
  assert (qed_create (path_of ("b.qed"), &co) == 0);
  random_workload ("b.qed", model, 1);

  /* Threads racing to allocate the same clusters. */
  co.backing = NULL;
  assert (qed_create (path_of ("c.qed"), &co) == 0);
  img = open_rw ("c.qed");
  for (t = 0; t < THREADS; ++t) {
    w[t].img = img;
    w[t].t = t;
    assert (pthread_create (&th[t], NULL, writer_thread, &w[t]) == 0);
  }
  for (t = 0; t < THREADS; ++t)
    pthread_join (th[t], NULL);
  for (k = 0; k * CHUNK < SIZE; ++k) {
    uint64_t len = k * CHUNK + CHUNK > SIZE ? SIZE - k * CHUNK : CHUNK;
    memset (model + k * CHUNK, (int) (k % 255 + 1), len);
  }
  verify (img, model);
  check_clean (img);
  assert (qed_close (img) == 0);

  free (model);
  if (fork () == 0)
    execlp ("rm", "rm", "-rf", dir, (char *) NULL);
  return 0;
}
