/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A frozen bitmap's point-in-time view (copy-before-write).
 *
 * From qdb_freeze_new until qdb_freeze_free, every granule (of the
 * frozen bitmap's granularity) that is about to be overwritten, zeroed
 * or trimmed for the first time is first copied, as it is on the disk,
 * into a scratch file; reads of the view then take copied granules
 * from the scratch file and the others from the disk.  The scratch file
 * has no name (qdb-scratch.h: so it disappears at release, at exit and
 * at a crash) and is sparse: it holds granule g at offset
 * g * granularity and grows only with what is copied.
 */

#ifndef QAD_QDB_FREEZE_H
#define QAD_QDB_FREEZE_H

#include <stdbool.h>
#include <stdint.h>

/* Reads the current disk: like nbdkit's pread, returns -1 and sets
 * *ERR on failure.
 */
typedef int (*qdb_disk_read) (void *opaque, void *buf, uint32_t count,
                              uint64_t offset, int *err);

struct qdb_freeze;

/* DIR: where the scratch file goes; QDB_PATH: the QDB file (for the
 * scratch file's name, if it needs one: qdb-scratch.h); NAME: the
 * bitmap.
 */
extern struct qdb_freeze *qdb_freeze_new (const char *dir,
                                          const char *qdb_path,
                                          const char *name,
                                          uint64_t granularity,
                                          uint64_t disk_size);
extern void qdb_freeze_free (struct qdb_freeze *fz);
extern const char *qdb_freeze_name (const struct qdb_freeze *fz);

/* Before [offset, offset+count) changes: copy the granules not copied
 * yet.  Concurrent calls on the same granule wait for one copy.
 */
extern int qdb_freeze_before_write (struct qdb_freeze *fz, uint64_t offset,
                                    uint64_t count, qdb_disk_read read,
                                    void *opaque, int *err);

/* Read [offset, offset+count) of the disk as it was at the freeze. */
extern int qdb_freeze_read (struct qdb_freeze *fz, void *buf, uint32_t count,
                            uint64_t offset, qdb_disk_read read,
                            void *opaque, int *err);

/* For the view's extents.  Between qdb_freeze_hold and
 * qdb_freeze_unhold no granule becomes copied (writers that must copy
 * one wait), so what the disk says about a granule that is not copied
 * is true of the disk as it was at the freeze.
 */
extern void qdb_freeze_hold (struct qdb_freeze *fz);
extern void qdb_freeze_unhold (struct qdb_freeze *fz);

/* Whether the granule holding OFFSET reads from the scratch file. */
extern bool qdb_freeze_is_copied (struct qdb_freeze *fz, uint64_t offset);

/* Whether the copy of [offset, offset+count), inside granules that are
 * copied, is all zero bytes: 1 if so, 0 if not, -1 (and *ERR) if the
 * scratch file cannot be read.
 */
extern int qdb_freeze_copy_is_zero (struct qdb_freeze *fz, uint64_t offset,
                                    uint64_t count, int *err);

/* Bytes copied so far (for info and tests). */
extern uint64_t qdb_freeze_copied_bytes (struct qdb_freeze *fz);

#endif /* QAD_QDB_FREEZE_H */
