/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Image locking compatible with QEMU's: open file description (OFD)
 * byte-range locks on the bytes QEMU uses for its permissions, so that
 * qemu-img / qemu-nbd refuse an image we serve and we refuse one they
 * use, and a second server on the same image is refused.
 *
 * QEMU locks byte 100+i for each permission i it holds and 200+i for
 * each permission it does not share (i: 0 consistent read, 1 write,
 * 2 write unchanged, 3 resize).  Before taking a permission it checks
 * that nobody holds the matching "unshared" byte, and before refusing
 * to share one that nobody holds the matching permission byte.
 */

#ifndef QAD_IMAGE_LOCK_H
#define QAD_IMAGE_LOCK_H

#include <stdbool.h>

/* Lock FD (named NAME in messages) for reading (shared with other
 * readers, not with writers) or for writing (exclusive of any other
 * writer and of readers that refuse to share writing).  Locks last as
 * long as the open file description.  Returns -1 with a message naming
 * NAME when another process conflicts.
 */
extern int qad_lock_image (int fd, const char *name, bool write);

/* Lock the whole of FD exclusively (an OFD write lock), for files only
 * this project's objects open: an add-cow sidecar, a QDB file.  WHAT
 * says what the file is in the message ("add-cow file") when another
 * process holds the lock (errno EAGAIN).
 */
extern int qad_lock_whole_file (int fd, const char *name, const char *what);

#endif /* QAD_IMAGE_LOCK_H */
