/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* fsync the directory that holds PATH.  A new file (or a new name made
 * by link or rename) is durable on ext4 and XFS only after its
 * directory has been fsynced.  Returns 0, or -1 with errno set.
 */

#ifndef QAD_FSYNC_DIR_H
#define QAD_FSYNC_DIR_H

extern int qad_fsync_dir_of (const char *path);

#endif /* QAD_FSYNC_DIR_H */
