/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Crash states from a recorder log (pc-log.h) and a snapshot of the
 * directory taken before the server started.  See pc-replay.c.
 */

#ifndef PC_REPLAY_H
#define PC_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc-log.h"

struct pc_op {
  uint16_t type;                /* PC_WRITE, PC_TRUNCATE, PC_FALLOCATE,
                                   PC_RENAME, PC_LINK, PC_UNLINK, or
                                   PC_OPEN for a creating open */
  uint64_t seq;                 /* its record's sequence number */
  uint32_t file;
  uint32_t flags;
  uint64_t off, len;
  const uint8_t *data;          /* PC_WRITE: LEN bytes inside the log */
  const char *name, *name2;     /* namespace operations (NUL-terminated) */
  uint64_t durable_at;          /* seq of the SYNC_END that makes it
                                   durable, UINT64_MAX if none */
};

struct pc_snapfile {
  char *name;
  uint8_t *data;
  size_t len;
};

struct pc_buf {
  uint8_t *data;
  size_t len, alloc;
};

struct pc_log {
  uint8_t *raw;                 /* the whole log file */
  size_t raw_len;
  uint64_t nr_records;          /* crash points are 0..nr_records */
  uint64_t *rec_ts;             /* [seq-1]: record timestamps */
  uint16_t *rec_type;           /* [seq-1]: record types */
  struct pc_op *ops;
  size_t nr_ops;
  uint32_t nr_files;            /* recorder file numbers 1..nr_files */
  char **file_name;             /* [file]: name at first open */
  bool *file_dir;               /* [file]: a directory */
  int *file_snap;               /* [file]: snapshot index, -1 if new */
  struct pc_snapfile *snap;
  size_t nr_snap;
  uint64_t *sys_points;         /* systematic crash points */
  size_t nr_sys;
  uint32_t *snap_file;          /* [snapshot index]: file number or 0 */
  /* Per-state working storage. */
  struct pc_buf *content;       /* [file] */
  bool *touched;                /* [file]: content differs from start */
  const char **st_names;        /* the state's directory: names ... */
  uint32_t *st_nodes;           /* ... and what they name (see .c) */
  size_t st_count;
};

/* What to keep of the writes that are not yet durable at the crash. */
struct pc_crash {
  uint64_t point;               /* records with seq <= point happened */
  unsigned keep_permille;       /* chance to keep each optional op */
  unsigned tear_permille;       /* chance that a kept write is torn */
  uint64_t seed;                /* for the choices */
};

extern struct pc_log *pc_log_load (const char *log, const char *snapdir);
extern void pc_log_free (struct pc_log *lg);

/* The timestamp of the crash: acknowledgements before it were earned
 * by records at or before POINT.  0 for point 0.
 */
extern uint64_t pc_crash_ts (const struct pc_log *lg, uint64_t point);

/* The number of records stamped before TS: a crash point. */
extern uint64_t pc_point_before (const struct pc_log *lg, uint64_t ts);

/* The I-th crash state for SEED out of N: first systematic ones (just
 * before and just after each sync, keeping none or all of the
 * optional operations), then random ones.
 */
extern void pc_crash_pick (const struct pc_log *lg, uint64_t seed,
                           uint64_t i, uint64_t n, struct pc_crash *c);

/* Build the state; afterwards pc_state_file looks names up in it. */
extern void pc_state_build (struct pc_log *lg, const struct pc_crash *c);
extern bool pc_state_file (struct pc_log *lg, const char *name,
                           const uint8_t **data, size_t *len);
/* Write every file of the state into DIR.  Returns -1 on error. */
extern int pc_state_write (struct pc_log *lg, const char *dir);

/* Counts for the report. */
extern void pc_log_stats (const struct pc_log *lg, uint64_t *writes,
                          uint64_t *syncs);

#endif /* PC_REPLAY_H */
