/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Resize every bitmap of a QDB model to cover a disk of a new size
 * (qad-img resize FILE.qdb SIZE), built on the public qdb.h API.
 */

#ifndef QAD_QDB_RESIZE_H
#define QAD_QDB_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "qdb.h"

/* The disk offset of the first dirty granule of BM (bits loaded) that
 * starts at or past OFFSET, or UINT64_MAX.
 */
extern uint64_t qdb_first_dirty_from (const struct qdb_bitmap *bm,
                                      uint64_t offset);

/* Make every bitmap of QDB (bits loaded) cover NEW_SIZE bytes.  Bits
 * of the disk both sizes cover are kept; granules added by a grow are
 * clean (as QEMU's bitmaps when a disk grows).  A shrink needs SHRINK
 * and is refused while any bitmap has a dirty granule starting at or
 * past NEW_SIZE (named with its bitmap): those changes would be lost
 * to the next incremental backup.  Everything is checked before the
 * model changes.  The caller writes the model to a new file and
 * renames it into place.  Returns 0, or -1 after qad_error.
 */
extern int qdb_resize (struct qdb_file *qdb, uint64_t new_size, bool shrink);

#endif /* QAD_QDB_RESIZE_H */
