/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Lock-and-replace: the one way a QDB file is opened for change and
 * replaced, shared by the dirty-bitmap filter and qad-img.
 *
 * Notes on the design.  Whoever changes a QDB file holds the
 * whole-file OFD write lock (qad_lock_whole_file) on it for as long as
 * it may change it: the filter from .get_ready to exit, qad-img for one
 * command.  A change is never made in place: the complete new file is
 * written aside under a temporary name (locked too, before anything is
 * written), synced, renamed over the old name, and the directory is
 * synced, so that a crash leaves the old file or the new one, never a
 * mix.  Because the name can change hands this way while another
 * process waits to open it, qdb_open_locked checks after locking that
 * the path still names the inode it locked, and starts again if not.
 *
 * Lock order: the old file's lock, then the new file's; both are
 * taken with F_OFD_SETLK, which never blocks (a conflict is an error).
 * The filter calls qdb_replace_file with its tracker lock held
 * (qdb-tracker.h), so that lock comes first.
 */

#ifndef QAD_QDB_REPLACE_H
#define QAD_QDB_REPLACE_H

#include <stdbool.h>
#include <sys/types.h>

#include "qdb.h"

/* What a QDB file is called in lock refusals ("x.qdb: QDB file is in
 * use by another process").
 */
#define QDB_LOCK_WHAT "QDB file"

/* Open PATH with FLAGS (O_RDWR, maybe O_CREAT with mode 0644) and take
 * the whole-file lock.  Returns the descriptor or -1 (reported; errno
 * EAGAIN when another process holds the lock).
 */
extern int qdb_open_locked (const char *path, int flags);

/* Write MODEL (qdb_write, with ALLOCATE_ALL) to a new file with
 * permissions MODE beside PATH and rename it over PATH.  The caller
 * holds the lock on the old file.  Returns 0 and the new file's
 * descriptor (open read-write, locked) in *NEW_FD, or -1 (reported).
 * On a failure after the rename (the directory sync), *NEW_FD is the
 * new file, which PATH now names; otherwise it is -1.
 */
extern int qdb_replace_file (const char *path, struct qdb_file *model,
                             mode_t mode, bool allocate_all, int *new_fd);

#endif /* QAD_QDB_REPLACE_H */
