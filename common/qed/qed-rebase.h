/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Changing the backing file an image records (qad-img rebase and
 * amend): the crash-safe header switch and the copy that keeps the
 * guest-visible contents when the backing changes.  See the design
 * notes in qed-rebase.c.
 */

#ifndef QAD_QED_REBASE_H
#define QAD_QED_REBASE_H

#include <stdint.h>

#include "blockdev.h"
#include "qed-image.h"

/* Where a new backing name of NAME_LEN bytes can go in the header
 * area of H (geometry G) without touching the name H records now:
 * right after the fixed header, else right after the current name.
 * Returns 0 and *OFFSET, or -1 (errno ENOSPC) with an error naming
 * FILENAME and the sizes when the area cannot hold both names.
 */
extern int qed_choose_backing_name_offset (const char *filename,
                                           const struct qed_header *h,
                                           const struct qed_geometry *g,
                                           uint32_t name_len,
                                           uint32_t *offset);

/* Record NAME (NULL or "": no backing file) and FORMAT ("raw", "qed"
 * or NULL: probed) in the header of IMG, open read-write.  Crash-safe:
 * the name is written where the current header does not look, made
 * durable, and only then the 64-byte header, which lies in one sector,
 * is switched in one write and made durable.  The image's open backing
 * chain is not changed: close IMG afterwards.  0, or -1 after an error
 * (the header on disk is then the old one or, if only the last sync
 * failed, either one).
 */
extern int qed_header_set_backing (struct qed_image *img, const char *name,
                                   const char *format);

/* Progress of qed_rebase_copy: DONE of TOTAL guest bytes examined. */
typedef void (*qed_rebase_progress_fn) (void *opaque, uint64_t done,
                                        uint64_t total);

/* The data half of a safe rebase of IMG (open read-write, with its
 * current backing chain) onto NEW_BACKING (NULL: no backing file):
 * every cluster that IMG does not allocate and whose bytes differ
 * between the current backing and NEW_BACKING gets the current bytes
 * written into IMG, so that after qed_header_set_backing the guest
 * reads the same disk.  Ends with a flush.  *COPIED counts the bytes
 * written.  0 or -1 after an error; on error the header still names
 * the old backing and the guest view is unchanged.
 */
extern int qed_rebase_copy (struct qed_image *img,
                            struct qad_blockdev *new_backing,
                            qed_rebase_progress_fn progress, void *opaque,
                            uint64_t *copied);

#endif /* QAD_QED_REBASE_H */
