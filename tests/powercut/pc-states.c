/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* pc-states: the crash states of a recorded run of any program, for
 * checks made from a script with the real tools (qad-img rebase and
 * amend in test-tool-rebase.bats), where pc-check's server workload
 * and its data expectations do not apply.
 *
 *   pc-states LOG SNAP count              prints how many states give
 *                                         every systematic crash point
 *   pc-states LOG SNAP N SEED I DIR       writes state I of N into DIR
 *
 * LOG is the recorder's log and SNAP the directory as it was before
 * the program ran (pc-replay.c says how states are chosen).
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc-replay.h"

int
main (int argc, char *argv[])
{
  struct pc_log *lg;
  struct pc_crash c;
  uint64_t n, seed, i;

  if (argc != 4 && argc != 7) {
    fprintf (stderr, "usage: pc-states LOG SNAP count | "
             "pc-states LOG SNAP N SEED I DIR\n");
    exit (2);
  }
  lg = pc_log_load (argv[1], argv[2]);
  if (lg == NULL)
    exit (2);
  if (argc == 4) {
    /* pc_crash_pick makes at most half of the states systematic. */
    printf ("%" PRIu64 "\n", (uint64_t) lg->nr_sys * 4);
    pc_log_free (lg);
    return 0;
  }
  n = strtoull (argv[3], NULL, 0);
  seed = strtoull (argv[4], NULL, 0);
  i = strtoull (argv[5], NULL, 0);
  pc_crash_pick (lg, seed, i, n, &c);
  pc_state_build (lg, &c);
  if (pc_state_write (lg, argv[6]) == -1)
    exit (2);
  printf ("state %" PRIu64 ": crash after record %" PRIu64 "/%" PRIu64
          ", keep %u/1000, tear %u/1000\n", i, c.point, lg->nr_records,
          c.keep_permille, c.tear_permille);
  pc_log_free (lg);
  return 0;
}
