/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* File-level operations on an add-cow sidecar (see addcow-file.c). */

#ifndef QAD_ADDCOW_FILE_H
#define QAD_ADDCOW_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "addcow.h"

/* Read and validate the header of the open sidecar FD (named PATH in
 * messages).  *FILE_SIZE gets the file's length.  0 or -1.
 */
extern int addcow_read_header (int fd, const char *path,
                               struct addcow_header *h, uint64_t *file_size);

/* Load the bitmap for a disk of DISK_SIZE bytes into a new buffer of
 * addcow_bitmap_size() bytes (*BMLEN).  A file with no bitmap at all
 * (length HEADER_SIZE) is "fresh": *FRESH is set and the buffer is all
 * zeroes.  A shorter bitmap than the disk needs, or a bit set past the
 * disk's last cluster, is an error naming the file and the values.
 */
extern int addcow_load_bitmap (int fd, const char *path,
                               const struct addcow_header *h,
                               uint64_t file_size, uint64_t disk_size,
                               uint8_t **bm, uint64_t *bmlen, bool *fresh);

/* Create a new sidecar PATH atomically (never replacing an existing
 * file).  With WITH_BITMAP, the bitmap for DISK_SIZE bytes follows,
 * all zeroes; without, the file is "fresh" (header only).
 */
extern int addcow_create_file (const char *path,
                               const struct addcow_header *h,
                               bool with_bitmap, uint64_t disk_size);

/* Create a new empty file beside PATH, named PATH.tmpXXXXXX (*TMP,
 * which the caller frees, also on failure), for writing aside before a
 * link or rename.  Returns its descriptor, or -1 after an error.
 */
extern int addcow_create_temp (const char *path, char **tmp);

/* Rewrite the whole header area (HEADER_SIZE bytes) of FD from H. */
extern int addcow_write_header (int fd, const char *path,
                                const struct addcow_header *h);

/* Take an exclusive OFD lock on the whole file; a second server or
 * tool gets a clear "in use" error.
 */
extern int addcow_lock_fd (int fd, const char *path);

#endif /* QAD_ADDCOW_FILE_H */
