/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* pc-check: explore the crash states of one recorded run.
 *
 *   pc-check check       OBJECT LOG SNAP WORKLOG WORK STATES SEED
 *   pc-check materialize OBJECT LOG SNAP WORKLOG WORK STATES SEED I DIR
 *   pc-check verify-raw  OBJECT LOG SNAP WORKLOG WORK STATES SEED I RAW
 *
 * OBJECT is qed, addcow or dirty-bitmap; LOG the recorder's log; SNAP
 * the directory as it was before the server started; WORKLOG the
 * workload's log; WORK a scratch directory; STATES the number of crash
 * states and SEED the seed that choose them (pc-replay.c).
 *
 * check: build every state, reopen it through common/ and check the
 * invariants (pc-object.h, pc-expect.c).  Prints a summary and the
 * first failures; exits 1 if any state failed, 3 if the only failures
 * are crashes while the server started (before the first request: no
 * data can be lost, but the object may not reopen), 2 on a usage or
 * I/O error.
 * materialize: write the files of state I into DIR, for reopening
 * through a real server; prints the state's crash time.
 * verify-raw: check the disk RAW, read from state I through a real
 * server, against the data invariants (exit 1 if wrong).
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pc-expect.h"
#include "pc-object.h"
#include "pc-replay.h"

#define MAX_SHOWN 10

static const struct pc_object *
object_by_name (const char *name)
{
  if (strcmp (name, "qed") == 0)
    return &pc_object_qed;
  if (strcmp (name, "addcow") == 0)
    return &pc_object_addcow;
  if (strcmp (name, "dirty-bitmap") == 0)
    return &pc_object_dirty_bitmap;
  fprintf (stderr, "pc-check: unknown object %s\n", name);
  exit (2);
}

static void
describe (const struct pc_log *lg, uint64_t i, const struct pc_crash *c,
          const char *what, const char *msg)
{
  printf ("state %" PRIu64 " (crash after record %" PRIu64 "/%" PRIu64
          ", keep %u/1000, tear %u/1000): %s: %s\n", i, c->point,
          lg->nr_records, c->keep_permille, c->tear_permille, what, msg);
}

static uint8_t *
read_file (const char *path, uint64_t size)
{
  FILE *fp = fopen (path, "rb");
  uint8_t *buf = malloc (size + 1);
  if (fp == NULL || buf == NULL || fread (buf, 1, size + 1, fp) != size) {
    fprintf (stderr, "pc-check: %s: cannot read %" PRIu64 " bytes\n",
             path, size);
    exit (2);
  }
  fclose (fp);
  return buf;
}

int
main (int argc, char *argv[])
{
  const struct pc_object *obj;
  struct pc_log *lg;
  struct pc_expect *ex;
  struct pc_crash c0 = { 0 }, c;
  uint64_t states, seed, i, failed = 0, open_failed = 0, data_failed = 0;
  uint64_t durable_total = 0, writes, syncs, first_ts = 0, uncreated = 0;
  uint64_t startup_failed = 0;
  uint8_t *init, *disk;
  char msg[2048];
  const char *mode, *work;
  struct timespec t0, t1;

  if (argc < 9) {
    fprintf (stderr, "usage: pc-check check|materialize|verify-raw OBJECT "
             "LOG SNAP WORKLOG WORK STATES SEED [I PATH]\n");
    exit (2);
  }
  mode = argv[1];
  obj = object_by_name (argv[2]);
  work = argv[6];
  states = strtoull (argv[7], NULL, 0);
  seed = strtoull (argv[8], NULL, 0);
  clock_gettime (CLOCK_MONOTONIC, &t0);

  lg = pc_log_load (argv[3], argv[4]);
  ex = pc_expect_load (argv[5]);
  if (lg == NULL || ex == NULL)
    exit (2);
  init = malloc (ex->size);
  disk = malloc (ex->size);
  if (init == NULL || disk == NULL) {
    perror ("malloc");
    exit (2);
  }

  /* The disk before the workload: everything the server did before
   * the first request was sent (opening, creating files), reopened.
   * A crash before that point may find the object's files not created
   * yet: that loses nothing.
   */
  for (i = 0; i < ex->nr_ops; ++i)
    if (i == 0 || ex->ops[i].t_issue < first_ts)
      first_ts = ex->ops[i].t_issue;
  c0.point = pc_point_before (lg, first_ts);
  c0.keep_permille = 1000;
  pc_state_build (lg, &c0);
  if (obj->read (lg, work, init, ex->size, NULL, msg, sizeof msg) < 0) {
    fprintf (stderr, "pc-check: the state before the workload: %s\n", msg);
    exit (2);
  }

  if (strcmp (mode, "materialize") == 0 || strcmp (mode, "verify-raw") == 0) {
    if (argc != 11) {
      fprintf (stderr, "pc-check: %s needs I and a path\n", mode);
      exit (2);
    }
    i = strtoull (argv[9], NULL, 0);
    pc_crash_pick (lg, seed, i, states, &c);
    pc_state_build (lg, &c);
    if (mode[0] == 'm') {
      if (pc_state_write (lg, argv[10]) == -1)
        exit (2);
      printf ("state %" PRIu64 ": crash after record %" PRIu64 "/%"
              PRIu64 "\n", i, c.point, lg->nr_records);
    }
    else {
      uint8_t *raw = read_file (argv[10], ex->size);
      uint64_t durable, bad;
      bad = pc_expect_check (ex, pc_crash_ts (lg, c.point), init, raw,
                             msg, sizeof msg, &durable);
      if (bad) {
        describe (lg, i, &c, "read through the server", msg);
        exit (1);
      }
      printf ("state %" PRIu64 ": %" PRIu64 " durable requests read back "
              "through the server\n", i, durable);
      free (raw);
    }
    goto done;
  }
  if (strcmp (mode, "check") != 0) {
    fprintf (stderr, "pc-check: unknown mode %s\n", mode);
    exit (2);
  }

  for (i = 0; i < states; ++i) {
    uint64_t durable, bad;
    int r;

    pc_crash_pick (lg, seed, i, states, &c);
    pc_state_build (lg, &c);
    r = obj->read (lg, work, disk, ex->size, init, msg, sizeof msg);
    if (r == -2 && c.point < c0.point) {
      uncreated++;
      continue;
    }
    if (r < 0) {
      if (failed++ < MAX_SHOWN)
        describe (lg, i, &c, c.point < c0.point ? "reopen (crash during "
                  "the server's start)" : "reopen", msg);
      open_failed++;
      startup_failed += c.point < c0.point;
      continue;
    }
    bad = pc_expect_check (ex, pc_crash_ts (lg, c.point), init, disk,
                           msg, sizeof msg, &durable);
    durable_total += durable;
    if (bad) {
      if (failed++ < MAX_SHOWN)
        describe (lg, i, &c, "data", msg);
      data_failed++;
    }
  }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  pc_log_stats (lg, &writes, &syncs);
  printf ("powercut %s: %" PRIu64 " crash states from %" PRIu64
          " records (%" PRIu64 " writes, %" PRIu64 " syncs) and %zu "
          "requests; %" PRIu64 " failed (%" PRIu64 " reopen/consistency, %"
          PRIu64 " data, %" PRIu64 " of them during the server's start); %"
          PRIu64 " repaired on open; %" PRIu64
          " before the files were created; %" PRIu64
          " durable requests checked; %.1f s\n",
          obj->name, states, lg->nr_records, writes, syncs, ex->nr_ops,
          failed, open_failed, data_failed, startup_failed,
          obj->repairs ? *obj->repairs : 0, uncreated, durable_total,
          (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
 done:
  free (init);
  free (disk);
  pc_expect_free (ex);
  pc_log_free (lg);
  if (failed && failed == startup_failed)
    return 3;
  return failed ? 1 : 0;
}
