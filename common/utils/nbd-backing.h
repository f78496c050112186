/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef QAD_NBD_BACKING_H
#define QAD_NBD_BACKING_H

#include "blockdev.h"

/* Open an NBD export by URI as a read-only block device (libnbd).
 * Extents come from base:allocation when the server offers it.
 */
extern struct qad_blockdev *nbd_backing_open (const char *uri);

/* Open a URL that nbdkit's curl plugin can read (http, https, ftp,
 * ...) as a read-only block device: runs "nbdkit -r -s curl URL" as
 * a child that exits with us, and talks NBD to it over a pipe.
 */
extern struct qad_blockdev *nbd_backing_open_url (const char *url);

#endif /* QAD_NBD_BACKING_H */
