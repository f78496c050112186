/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* pc-workload URI SIZE CONNS OPS SEED LOG [COMMAND]
 *
 * The power-cut workload: CONNS connections (one thread each) send
 * OPS requests each, one at a time: unaligned writes (a quarter with
 * FUA), write-zeroes, trims and flushes, mostly inside a hot area of
 * the first quarter of the disk so that connections often hit the
 * same clusters.  Requests are unaligned unless the server asks for a
 * minimum block size (qemu-nbd does: 512).  Write number ID carries pc_pattern (ID, offset).
 *
 * COMMAND (a shell command) runs once half of all the requests have
 * been answered, while the connections go on sending theirs: a live
 * command to the server (the dirty-bitmap filter's control socket)
 * whose crash states are then explored too.  The workload fails if
 * it fails.
 *
 * LOG gets one line per request, with CLOCK_MONOTONIC times taken
 * just before the request was sent and just after its reply arrived
 * (the clock the recorder stamps its records with):
 *
 *   H SIZE MULTI_CONN CONNS
 *   W|Z|T|F ID CONN OFFSET LENGTH FUA T_ISSUE T_ACK OK
 *
 * OK is 0 when the request failed: the checker treats it as never
 * acknowledged.  pc-expect.c reads this log.
 */

#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>

#include "pc-rng.h"
#include "vector.h"

static const char *uri;
static uint64_t size, seed;
static unsigned nconns, nops;
static bool can_fua, can_zero, can_trim;
static uint64_t min_block = 1;  /* the server's minimum block size */
static unsigned answered;       /* requests answered, all connections */
static unsigned finished;       /* connections done (or failed) */

struct conn {
  unsigned index;
  pthread_t thread;
  char *log;                    /* lines, built in memory */
  size_t log_len, log_alloc;
  int failed;
};

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
log_line (struct conn *c, char kind, uint64_t id, uint64_t off,
          uint64_t len, bool fua, uint64_t t0, uint64_t t1, bool ok)
{
  char line[256];
  int n = snprintf (line, sizeof line, "%c %" PRIu64 " %u %" PRIu64
                    " %" PRIu64 " %d %" PRIu64 " %" PRIu64 " %d\n",
                    kind, id, c->index, off, len, fua, t0, t1, ok);
  char *log = vector_grow (c->log, c->log_len, &c->log_alloc, n + 1, 1);

  if (log == NULL) { perror ("realloc"); exit (EXIT_FAILURE); }
  c->log = log;
  memcpy (c->log + c->log_len, line, n);
  c->log_len += n;
}

/* A random request range: mostly small and unaligned, in the hot area;
 * a third of them next to the previous request of the connection (the
 * same cluster, as sequential writers do).
 */
static void
pick_range (uint64_t *rng, uint64_t *off, uint64_t *len, uint64_t prev)
{
  uint64_t r = pc_rng_next (rng) % 100;
  uint64_t area = pc_rng_next (rng) % 100 < 75 ? size / 4 : size;

  if (pc_rng_next (rng) % 3 == 0) {
    *len = 1 + pc_rng_next (rng) % 2048;
    *off = prev + pc_rng_next (rng) % 4096;
    if (*off + *len <= size)
      return;
  }
  if (r < 60)
    *len = 1 + pc_rng_next (rng) % 6000;
  else if (r < 85)
    *len = 4096;
  else
    *len = 1 + pc_rng_next (rng) % 65536;
  if (*len > area)
    *len = area;
  *off = pc_rng_next (rng) % (area - *len + 1);
  if (r >= 60 && r < 85)
    *off &= ~UINT64_C (4095);
}

static void *
run (void *vp)
{
  struct conn *c = vp;
  struct nbd_handle *h = nbd_create ();
  uint64_t rng = pc_rng_seed (seed, c->index);
  uint8_t *buf = malloc (65536);
  uint64_t prev = 0;
  unsigned n;

  if (h == NULL || buf == NULL || nbd_connect_uri (h, uri) == -1) {
    fprintf (stderr, "pc-workload: connection %u: %s\n", c->index,
             nbd_get_error ());
    c->failed = 1;
    goto out;
  }
  for (n = 0; n < nops; ++n) {
    uint64_t id = (uint64_t) c->index * 1000000 + n + 1;
    uint64_t r = pc_rng_next (&rng) % 100, off, len, t0, t1, i;
    bool fua = can_fua && pc_rng_next (&rng) % 4 == 0;
    uint32_t flags = fua ? LIBNBD_CMD_FLAG_FUA : 0;
    int ret;
    char kind;

    pick_range (&rng, &off, &len, prev);
    if (min_block > 1) {        /* qemu-nbd: multiples of 512 */
      off -= off % min_block;
      len = (len + min_block - 1) / min_block * min_block;
      if (len > size - off)
        len = size - off;
    }
    prev = off & ~UINT64_C (4095);
    if (r < 65 || (r < 80 && !can_zero) || (r < 88 && !can_trim)) {
      kind = 'W';
      for (i = 0; i < len; ++i)
        buf[i] = pc_pattern (id, off + i);
      t0 = now_ns ();
      ret = nbd_pwrite (h, buf, len, off, flags);
    }
    else if (r < 80) {
      kind = 'Z';
      if (pc_rng_next (&rng) & 1)
        flags |= LIBNBD_CMD_FLAG_NO_HOLE;
      t0 = now_ns ();
      ret = nbd_zero (h, len, off, flags);
    }
    else if (r < 88) {
      kind = 'T';
      t0 = now_ns ();
      ret = nbd_trim (h, len, off, flags);
    }
    else {
      kind = 'F';
      off = len = 0;
      fua = false;
      t0 = now_ns ();
      ret = nbd_flush (h, 0);
    }
    t1 = now_ns ();
    if (ret == -1)
      fprintf (stderr, "pc-workload: %c %" PRIu64 " failed: %s\n",
               kind, id, nbd_get_error ());
    log_line (c, kind, id, off, len, fua, t0, t1, ret == 0);
    __atomic_add_fetch (&answered, 1, __ATOMIC_RELEASE);
  }
  nbd_shutdown (h, 0);
 out:
  __atomic_add_fetch (&finished, 1, __ATOMIC_RELEASE);
  free (buf);
  if (h)
    nbd_close (h);
  return NULL;
}

int
main (int argc, char *argv[])
{
  struct nbd_handle *h;
  struct conn *conns;
  FILE *fp;
  int multi_conn;
  unsigned i;
  int status = EXIT_SUCCESS;

  if (argc != 7 && argc != 8) {
    fprintf (stderr, "usage: pc-workload URI SIZE CONNS OPS SEED LOG "
             "[COMMAND]\n");
    exit (EXIT_FAILURE);
  }
  uri = argv[1];
  size = strtoull (argv[2], NULL, 0);
  nconns = atoi (argv[3]);
  nops = atoi (argv[4]);
  seed = strtoull (argv[5], NULL, 0);
  if (size < 65536 || nconns < 1 || nconns > 64) {
    fprintf (stderr, "pc-workload: bad SIZE or CONNS\n");
    exit (EXIT_FAILURE);
  }

  /* What the server offers decides the mix and the flush rule. */
  h = nbd_create ();
  if (h == NULL || nbd_connect_uri (h, uri) == -1) {
    fprintf (stderr, "pc-workload: %s\n", nbd_get_error ());
    exit (EXIT_FAILURE);
  }
  if ((uint64_t) nbd_get_size (h) != size) {
    fprintf (stderr, "pc-workload: disk size %" PRId64 ", expected %"
             PRIu64 "\n", nbd_get_size (h), size);
    exit (EXIT_FAILURE);
  }
  can_fua = nbd_can_fua (h) == 1;
  can_zero = nbd_can_zero (h) == 1;
  can_trim = nbd_can_trim (h) == 1;
  multi_conn = nbd_can_multi_conn (h) == 1;
  if (nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM) > 1)
    min_block = nbd_get_block_size (h, LIBNBD_SIZE_MINIMUM);
  if (nbd_can_flush (h) != 1) {
    fprintf (stderr, "pc-workload: the server cannot flush\n");
    exit (EXIT_FAILURE);
  }
  nbd_shutdown (h, 0);
  nbd_close (h);

  conns = calloc (nconns, sizeof *conns);
  if (conns == NULL) { perror ("calloc"); exit (EXIT_FAILURE); }
  for (i = 0; i < nconns; ++i) {
    conns[i].index = i;
    if (pthread_create (&conns[i].thread, NULL, run, &conns[i]) != 0) {
      perror ("pthread_create");
      exit (EXIT_FAILURE);
    }
  }
  if (argc == 8) {
    const struct timespec ms = { .tv_nsec = 1000000 };
    while (__atomic_load_n (&answered, __ATOMIC_ACQUIRE) < nconns * nops / 2
           && __atomic_load_n (&finished, __ATOMIC_ACQUIRE) < nconns)
      nanosleep (&ms, NULL);
    if (system (argv[7]) != 0) {
      fprintf (stderr, "pc-workload: the command failed: %s\n", argv[7]);
      status = EXIT_FAILURE;
    }
  }
  fp = fopen (argv[6], "w");
  if (fp == NULL) { perror (argv[6]); exit (EXIT_FAILURE); }
  fprintf (fp, "H %" PRIu64 " %d %u\n", size, multi_conn, nconns);
  for (i = 0; i < nconns; ++i) {
    pthread_join (conns[i].thread, NULL);
    if (conns[i].failed)
      status = EXIT_FAILURE;
    if (conns[i].log_len)
      fwrite (conns[i].log, 1, conns[i].log_len, fp);
    free (conns[i].log);
  }
  if (fclose (fp) == EOF) { perror (argv[6]); exit (EXIT_FAILURE); }
  free (conns);
  return status;
}
