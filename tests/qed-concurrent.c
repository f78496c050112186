/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qed-concurrent URI SIZE CHUNK THREADS OUTFILE
 *
 * THREADS threads, each with its own NBD connection, write the chunks
 * of the disk that belong to them (chunk k goes to thread k % THREADS)
 * in a shuffled order, so that neighbouring chunks of one cluster are
 * written by different threads at the same time: they race to allocate
 * the same clusters and L2 tables, and partial-cluster writes race with
 * each other.  Chunk k is filled with a byte pattern derived from k.
 * The expected disk is written to OUTFILE for the caller to compare.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

static const char *uri;
static uint64_t size, chunk;
static unsigned nthreads;

static void
fill (char *buf, uint64_t k, uint64_t len)
{
  uint64_t i;
  for (i = 0; i < len; ++i)
    buf[i] = (char) ((k * 131 + i / 512) % 251 + 1);
}

static void *
worker (void *arg)
{
  unsigned t = (uintptr_t) arg;
  uint64_t nchunks = (size + chunk - 1) / chunk, n = 0, i, *order;
  struct nbd_handle *nbd = nbd_create ();
  char *buf = malloc (chunk);
  unsigned seed = t + 1;

  order = malloc (sizeof *order * (nchunks / nthreads + 1));
  if (nbd == NULL || buf == NULL || order == NULL ||
      nbd_connect_uri (nbd, uri) == -1) {
    fprintf (stderr, "thread %u: %s\n", t, nbd_get_error ());
    exit (EXIT_FAILURE);
  }
  for (i = t; i < nchunks; i += nthreads)
    order[n++] = i;
  for (i = n; i > 1; --i) {            /* shuffle */
    uint64_t j = rand_r (&seed) % i, tmp = order[i - 1];
    order[i - 1] = order[j];
    order[j] = tmp;
  }
  for (i = 0; i < n; ++i) {
    uint64_t k = order[i], off = k * chunk;
    uint64_t len = off + chunk > size ? size - off : chunk;
    fill (buf, k, len);
    if (nbd_pwrite (nbd, buf, len, off, 0) == -1) {
      fprintf (stderr, "thread %u: write at %" PRIu64 ": %s\n",
               t, off, nbd_get_error ());
      exit (EXIT_FAILURE);
    }
  }
  if (nbd_flush (nbd, 0) == -1 || nbd_shutdown (nbd, 0) == -1) {
    fprintf (stderr, "thread %u: %s\n", t, nbd_get_error ());
    exit (EXIT_FAILURE);
  }
  nbd_close (nbd);
  free (buf);
  free (order);
  return NULL;
}

int
main (int argc, char **argv)
{
  pthread_t *th;
  unsigned t;
  uint64_t k;
  FILE *fp;
  char *buf;

  if (argc != 6) {
    fprintf (stderr, "usage: %s URI SIZE CHUNK THREADS OUTFILE\n", argv[0]);
    exit (EXIT_FAILURE);
  }
  uri = argv[1];
  size = strtoull (argv[2], NULL, 0);
  chunk = strtoull (argv[3], NULL, 0);
  nthreads = atoi (argv[4]);
  if (size == 0 || chunk == 0 || nthreads == 0) {
    fprintf (stderr, "bad arguments\n");
    exit (EXIT_FAILURE);
  }

  th = calloc (nthreads, sizeof *th);
  for (t = 0; t < nthreads; ++t)
    if ((errno = pthread_create (&th[t], NULL, worker,
                                 (void *) (uintptr_t) t)) != 0) {
      perror ("pthread_create");
      exit (EXIT_FAILURE);
    }
  for (t = 0; t < nthreads; ++t)
    pthread_join (th[t], NULL);

  fp = fopen (argv[5], "w");
  buf = malloc (chunk);
  if (fp == NULL || buf == NULL) {
    perror (argv[5]);
    exit (EXIT_FAILURE);
  }
  for (k = 0; k * chunk < size; ++k) {
    uint64_t len = k * chunk + chunk > size ? size - k * chunk : chunk;
    fill (buf, k, len);
    fwrite (buf, 1, len, fp);
  }
  if (fclose (fp) == EOF) {
    perror (argv[5]);
    exit (EXIT_FAILURE);
  }
  free (buf);
  free (th);
  return 0;
}
