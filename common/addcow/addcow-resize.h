/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Offline maintenance of an add-cow file and its raw image: resize
 * both, and empty the sidecar after a commit (addcow-resize.c).  The
 * caller holds the sidecar's lock (addcow_lock_fd) and has read and
 * validated its header.
 */

#ifndef QAD_ADDCOW_RESIZE_H
#define QAD_ADDCOW_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "addcow.h"

/* The sidecar FD (PATH) with header H, and the raw image IMAGE_FD
 * (IMAGE, a regular file): their sizes and, unless ALL_ALLOCATED or
 * fresh, the validated bitmap (NULL otherwise).
 */
struct addcow_pair {
  int fd;
  const char *path;
  struct addcow_header *h;
  int image_fd;
  char *image;                  /* resolved from the header */
  uint64_t file_size;           /* of the sidecar */
  uint64_t disk_size;           /* of the image */
  bool all_allocated;
  bool fresh;                   /* no bitmap yet: every bit 0 */
  uint8_t *bitmap;
  uint64_t bmlen;
};

/* Open the sidecar PATH read-write under its lock (refused while a
 * server or another tool holds it), read its header into *H (which
 * must outlive P), open its raw image read-write and load the sizes
 * and bitmap.  Returns 0, or -1 after qad_error with nothing left
 * open.  Close with addcow_pair_close.
 */
extern int addcow_pair_open (struct addcow_pair *p, struct addcow_header *h,
                             const char *path);
extern void addcow_pair_close (struct addcow_pair *p);

/* The guest offset of the first byte at or past OFFSET that the image
 * holds (a cluster whose bit is 1, or any when ALL_ALLOCATED; a
 * cluster straddling OFFSET is reported as OFFSET), else UINT64_MAX.
 */
extern uint64_t addcow_first_allocated_from (const struct addcow_pair *p,
                                             uint64_t offset);

/* Resize the image to NEW_SIZE and the bitmap with it.  Growing is
 * refused when BACKING_SIZE (0 without a backing file, UINT64_MAX when
 * unknown) is larger than the current size, unless ALL_ALLOCATED:
 * clusters with bit 0 would show the backing file's bytes where the
 * new area must read zeroes.  Shrinking needs SHRINK and is refused
 * when the image holds a cluster at or past NEW_SIZE, naming it.
 * Order: grow the bitmap, then the image; shrink the image, then the
 * bitmap; a crash between leaves a longer bitmap of zeroes, valid.
 */
extern int addcow_resize (struct addcow_pair *p, uint64_t new_size,
                          bool shrink, uint64_t backing_size);

/* Empty after a commit: every bit 0 (and ALL_ALLOCATED cleared, after
 * first setting every bit, so that no state between reads otherwise),
 * then the image's now unread clusters punched where the file system
 * can.  The caller has written every cluster the image held into the
 * backing file and synced it.
 */
extern int addcow_make_empty (struct addcow_pair *p);

#endif /* QAD_ADDCOW_RESIZE_H */
