/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The plugin below a filter as a read-only block device (struct
 * qad_blockdev), so that code in common/ can read through it: the qed
 * filter opens its QED image on it, and the add-cow filter with
 * addcow-local-image= reads its backing from it.
 *
 * Notes on the design.
 *
 * nbdkit gives a filter the plugin below as a per-connection
 * nbdkit_next, passed to each callback; the device is shared by every
 * connection.  So the device reads through the nbdkit_next of the
 * request being served, kept in a thread-local variable that the
 * filter sets (next_dev_enter) at the top of every callback that may
 * read through the device: common/ calls back into the device on the
 * calling thread only.  nbdkit 1.32 asserts that a context's
 * can_extents was asked before its extents are, so a filter must ask
 * can_extents on every connection's context before it serves requests.
 */

#ifndef QAD_NEXT_DEV_H
#define QAD_NEXT_DEV_H

#include <nbdkit-filter.h>

#include "blockdev.h"

/* The largest single read or extents query passed to the plugin. */
#define MAX_NEXT_REQUEST (UINT32_C (1) << 30)

/* The plugin below, for the request this thread is serving. */
extern __thread nbdkit_next *next_dev_current;

/* When set (a filter's debug flag), every read sent to the plugin
 * below is logged, with this prefix.
 */
extern const char *next_dev_debug_reads;

static inline void
next_dev_enter (nbdkit_next *next)
{
  next_dev_current = next;
}

/* At .prepare of every connection that reads through a shared device:
 * make NEXT current and ask its can_extents (see the notes above).
 */
extern int next_dev_prepare (nbdkit_next *next);

/* A later connection's NEXT must still serve SIZE bytes, the size the
 * shared device NAME was opened with; else an error naming both sizes.
 */
extern int next_dev_check_size (nbdkit_next *next, uint64_t size,
                                const char *name);

/* The plugin's export EXPORTNAME as a device named DESCRIPTION (with
 * the export name appended when it is not ""), through the current
 * nbdkit_next.  Its size is the plugin's size now.  NULL after
 * nbdkit_error.  Free with qad_blockdev_close.
 */
extern struct qad_blockdev *next_dev_open (const char *description,
                                           const char *exportname);

#endif /* QAD_NEXT_DEV_H */
