/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef ADDCOW_NBD_BACKING_H
#define ADDCOW_NBD_BACKING_H

#include "blockdev.h"

/* Open an NBD export by URI as a read-only block device (libnbd).
 * Extents come from base:allocation when the server offers it.
 */
extern struct qad_blockdev *nbd_backing_open (const char *uri);

#endif /* ADDCOW_NBD_BACKING_H */
