/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Offline maintenance of a QED image: change its size (qed-resize.c)
 * and empty it after a commit (qed-empty.c).  Both need an image open
 * read-write with nothing else using it (qed_open with .lock).
 */

#ifndef QAD_QED_RESIZE_H
#define QAD_QED_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "qed-image.h"

/* May IMG be changed offline?  It must be open read-write and not
 * carry NEED_CHECK (an image not closed cleanly is repaired first).
 * WHAT names the operation in the message.  0, or -1 after qad_error.
 */
extern int qed_offline_writable (struct qed_image *img, const char *what);

/* The guest offset of the first byte held in a data cluster at or
 * past OFFSET (the start of a data cluster that straddles OFFSET is
 * reported as OFFSET itself), or UINT64_MAX when there is none.
 * Zero clusters hold no data and are not reported.  -1 on error.
 */
extern int qed_first_data_from (struct qed_image *img, uint64_t offset,
                                 uint64_t *found);

/* Change image_size to NEW_SIZE (a multiple of 512).  Growing stays
 * within what the L1 table can map (the table never grows, as in
 * QEMU), and is refused when the backing file (IMG must have been
 * opened with it) is larger than the current size, since its bytes
 * would show through the new area that must read as zeroes (qemu-img
 * refuses it too).  Shrinking needs SHRINK and is refused when a data
 * cluster lies at or past NEW_SIZE, naming its offset.  Only the header
 * is rewritten (one 64-byte write, synced).
 */
extern int qed_resize (struct qed_image *img, uint64_t new_size, bool shrink);

/* Progress of a shrink's scan for data past the new end: DONE of
 * TOTAL guest bytes scanned, at least every 64 mappings and at the end.
 */
typedef void (*qed_resize_progress_fn) (void *opaque, uint64_t done,
                                        uint64_t total);

/* qed_resize, calling PROGRESS (may be NULL) with OPAQUE during the
 * scan (a grow only rewrites the header: no call).
 */
extern int qed_resize_progress (struct qed_image *img, uint64_t new_size,
                                bool shrink,
                                qed_resize_progress_fn progress,
                                void *opaque);

/* Empty the image: every guest cluster becomes unallocated and the
 * file is cut back to its header and L1 table.  The caller has made
 * every allocated cluster read the same from the backing file (commit)
 * and synced it.  Crash-safe: each L1 entry is either its old value or
 * 0, and both read the same; a crash before the final truncation
 * leaves only leaked clusters.
 */
extern int qed_make_empty (struct qed_image *img);

#endif /* QAD_QED_RESIZE_H */
