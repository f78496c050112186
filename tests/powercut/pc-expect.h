/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the disk may hold after a crash, from the workload's log of
 * acknowledgements (pc-workload.c).  See pc-expect.c.
 */

#ifndef PC_EXPECT_H
#define PC_EXPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pc_wop {
  char kind;                    /* 'W' write, 'Z' zero, 'T' trim, 'F' flush */
  uint64_t id;
  unsigned conn;
  uint64_t off, len;
  bool fua;
  uint64_t t_issue, t_ack;      /* t_ack is UINT64_MAX if it failed */
  uint8_t *data;                /* 'W': its LEN bytes (pc_pattern) */
};

struct pc_expect {
  uint64_t size;
  bool multi_conn;
  unsigned nconns;
  struct pc_wop *ops;
  size_t nr_ops;
  /* The disk cut at every request boundary: interval j is
   * [bound[j], bound[j+1]) and the requests covering it are
   * cover[cover_start[j] .. cover_start[j+1]).
   */
  uint64_t *bound;
  size_t nr_intervals;
  size_t *cover_start;
  uint32_t *cover;
  /* Scratch for one check. */
  bool *durable;
  uint64_t *flush_issue;        /* [conn], [nconns] = any connection */
};

extern struct pc_expect *pc_expect_load (const char *path);
extern void pc_expect_free (struct pc_expect *ex);

/* Check the disk ACTUAL (SIZE bytes) as read after a crash at time
 * CRASH_TS, against INIT, the disk before the workload.  Returns the
 * number of wrong bytes; the first is described in MSG.  *DURABLE_OUT
 * (if not NULL) gets the number of requests that had to survive.
 */
extern uint64_t pc_expect_check (struct pc_expect *ex, uint64_t crash_ts,
                                 const uint8_t *init, const uint8_t *actual,
                                 char *msg, size_t msglen,
                                 uint64_t *durable_out);

#endif /* PC_EXPECT_H */
