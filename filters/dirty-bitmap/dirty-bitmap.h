/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the files of the dirty-bitmap filter share: dirty-bitmap.c
 * (parameters, lifecycle, the data path), view.c (the export
 * "dirty-bitmap:NAME") and control.c (the control socket, freezes).
 *
 * Lock order, for all three: the QDB file's whole-file lock (held from
 * .get_ready to exit), then tracker.lock, then (during a command only)
 * the new QDB file's lock and a freeze's locks.
 */

#ifndef QAD_DIRTY_BITMAP_H
#define QAD_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "qdb-freeze.h"
#include "qdb-tracker.h"
#include "qdb.h"

#define VIEW_PREFIX "dirty-bitmap:"

/* Set in .config, read-only afterwards. */
extern char *qdb_path;
extern char *scratch_dir;

/* Set in .after_fork, read-only afterwards. */
extern uint64_t disk_size;

/* The persistence engine; its lock also protects the model
 * (tracker.qdb) and the list of freezes (see control.c).
 */
extern struct qdb_tracker tracker;

/* Replace the QDB file by MODEL (written aside, renamed into place);
 * the new file, locked, becomes the tracker's.  With the tracker's
 * lock held, or before any request.
 */
extern int persist (struct qdb_file *model);

/* control.c */
extern void control_error_handler (const char *msg);
extern void error_capture_begin (void);
extern char *error_capture_end (void);
extern void control_abandon (void);
extern int control_new (const char *path);
extern int control_start (void);
extern void control_stop (void);
extern void control_free (void);
extern struct qdb_freeze *find_freeze (const char *name);
extern int freezes_before_write (nbdkit_next *next, uint64_t offset,
                                 uint32_t count, int *err);
extern int read_next (void *opaque, void *buf, uint32_t count,
                      uint64_t offset, int *err);

/* view.c */
extern int view_list_exports (struct nbdkit_exports *exports);
extern int view_check_name (const char *name, const char *exportname);
extern int view_pread (nbdkit_next *next, const char *view, void *buf,
                       uint32_t count, uint64_t offset, uint32_t flags,
                       int *err);
extern int view_extents (nbdkit_next *next, const char *view,
                         uint32_t count, uint64_t offset, uint32_t flags,
                         struct nbdkit_extents *extents, int *err);

#endif /* QAD_DIRTY_BITMAP_H */
