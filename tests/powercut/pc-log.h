/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The binary log written by the power-cut recorder (recorder.c) and
 * read by the crash-state generator (pc-replay.c).
 *
 * Notes on the design
 *
 * A log is a sequence of records, each a fixed struct pc_rec followed
 * by NAME_LEN bytes of path, NAME2_LEN bytes of a second path (rename,
 * link) and DATA_LEN bytes of written data.  Records are appended
 * under one mutex, which also hands out SEQ, so the record order is
 * the order in which the calls were seen to complete.  A data record
 * is appended after its system call returned and before it returns to
 * the caller; a sync appends SYNC_START before the call and SYNC_END
 * (with START_SEQ naming its SYNC_START) after it, so a write whose
 * record precedes a SYNC_START completed before that sync began, and
 * is durable once the matching SYNC_END succeeded.  TS_NS is
 * CLOCK_MONOTONIC when the record was appended: the workload client
 * stamps its acknowledgements with the same clock, so an
 * acknowledgement stamped before a record's TS_NS came after every
 * call the server made to earn it.
 *
 * Files are identified by FILE, a small number the recorder gives
 * each inode (device and inode number) it sees; paths are relative to
 * the watched directory.  Host byte order: the log is read on the
 * machine that wrote it.
 */

#ifndef PC_LOG_H
#define PC_LOG_H

#include <stdint.h>

#define PC_LOG_MAGIC UINT32_C (0x31524350)   /* "PCR1" */

enum pc_rec_type {
  PC_OPEN = 1,          /* FILE opened as NAME; FLAGS = open flags */
  PC_WRITE,             /* DATA_LEN bytes at OFF */
  PC_TRUNCATE,          /* size := OFF */
  PC_FALLOCATE,         /* FLAGS = mode, OFF, LEN */
  PC_SYNC_START,        /* FLAGS: PC_SYNC_* kind */
  PC_SYNC_END,          /* RET, START_SEQ */
  PC_RENAME,            /* NAME -> NAME2 */
  PC_LINK,              /* NAME -> NAME2 (new name) */
  PC_UNLINK,            /* NAME */
  PC_CLOSE,             /* FILE's descriptor closed */
};

/* FLAGS of PC_SYNC_START. */
#define PC_SYNC_FSYNC      1
#define PC_SYNC_FDATASYNC  2
#define PC_SYNC_RANGE      3     /* sync_file_range: never durable */
#define PC_SYNC_DIR        0x100 /* the descriptor is a directory */
#define PC_SYNC_ALL        0x200 /* sync(2) or syncfs(2): every file */

/* FLAGS of PC_OPEN (besides the open flags) and of PC_WRITE. */
#define PC_OPEN_CREATED    0x80000000u  /* the open created the file */
#define PC_WRITE_DSYNC     1            /* O_SYNC/O_DSYNC/RWF_DSYNC */
#define PC_WRITE_DIRECT    2            /* O_DIRECT descriptor */

struct pc_rec {
  uint32_t magic;
  uint16_t type;
  uint16_t pad;
  uint64_t seq;
  uint64_t ts_ns;
  int64_t ret;                  /* result, or -errno */
  uint32_t file;                /* file number; 0 = none */
  uint32_t flags;
  uint64_t off;
  uint64_t len;
  uint64_t start_seq;           /* PC_SYNC_END */
  uint32_t name_len;
  uint32_t name2_len;
  uint64_t data_len;
};

#endif /* PC_LOG_H */
