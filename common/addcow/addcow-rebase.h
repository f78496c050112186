/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Changing what an add-cow sidecar records (qad-img rebase and
 * amend): a crash-safe replacement of the sidecar and the copy that
 * keeps the disk's contents when the backing file changes.  See the
 * design notes in addcow-rebase.c.
 */

#ifndef QAD_ADDCOW_REBASE_H
#define QAD_ADDCOW_REBASE_H

#include <stdint.h>

#include "addcow.h"
#include "blockdev.h"

/* Editing a header read from a sidecar, for a rewrite with
 * addcow_replace_file.  addcow_header_copy makes DST a copy of SRC
 * with its own strings (free with addcow_header_free).
 * addcow_header_set_backing records BACKING (NULL: none) in FORMAT,
 * which must be a defined backing format (addcow_choose_backing_format
 * picks it) and NULL without a backing file; addcow_header_set_image
 * records IMAGE.  Each returns 0, or -1 after an error naming FILE,
 * with H unchanged.  The header as a whole (e.g. image and backing
 * names differ) is validated when it is built.
 */
extern int addcow_header_copy (struct addcow_header *dst,
                               const struct addcow_header *src);
extern int addcow_header_set_backing (struct addcow_header *h,
                                      const char *file, const char *backing,
                                      const char *format);
extern int addcow_header_set_image (struct addcow_header *h,
                                    const char *file, const char *image);

/* Set ALL_ALLOCATED in H when BM holds a 1 for every cluster of a
 * disk of DISK_SIZE bytes (then the image alone is the disk).
 */
extern void addcow_header_note_bitmap (struct addcow_header *h,
                                       const uint8_t *bm,
                                       uint64_t disk_size);

/* Replace the sidecar PATH, open as FD and locked by the caller, by a
 * file with the header H (same cluster_bits and header_size as the
 * current one) followed by the bitmap BM of BMLEN bytes or, when BM is
 * NULL, by the bytes FD holds past its header.  Written aside, synced,
 * renamed over PATH, directory synced: after a crash PATH is the old
 * file or the new one, whole.  The new file is locked until the caller
 * closes *NEW_FD (set on success), so that a process that opens PATH
 * meanwhile is refused as for the old one.  0 or -1 after an error.
 */
extern int addcow_replace_file (int fd, const char *path,
                                const struct addcow_header *h,
                                const uint8_t *bm, uint64_t bmlen,
                                int *new_fd);

/* Progress of addcow_rebase_copy: DONE of TOTAL clusters examined. */
typedef void (*addcow_rebase_progress_fn) (void *opaque, uint64_t done,
                                           uint64_t total);

/* The data half of a safe rebase.  For each of the NCLUSTERS clusters
 * (of 2^CLUSTER_BITS bytes; the disk is DISK_SIZE bytes) whose bit in
 * BM is 0 and whose bytes differ between OLD_BACKING and NEW_BACKING
 * (NULL: reads zeroes), write the old bytes into the raw image IMAGE_FD
 * (named IMAGE) at the same offset and set the bit in BM (in memory
 * only).  Ends with an fdatasync of the image, so the caller may then
 * write BM with addcow_replace_file.  *COPIED counts bytes written.
 * A cluster whose bit is 0 is not part of the disk, so these writes
 * change nothing the guest reads until the new bitmap is in place.
 */
extern int addcow_rebase_copy (int image_fd, const char *image,
                               uint64_t disk_size, uint32_t cluster_bits,
                               uint8_t *bm,
                               struct qad_blockdev *old_backing,
                               struct qad_blockdev *new_backing,
                               addcow_rebase_progress_fn progress,
                               void *opaque, uint64_t *copied);

#endif /* QAD_ADDCOW_REBASE_H */
