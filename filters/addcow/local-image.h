/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* addcow-local-image=FILE: the add-cow image is a local raw file that
 * the filter opens itself, and the plugin below is the backing (for
 * example a read-only QED image decoded by the qed filter over curl).
 * The sidecar records BACKING_SUPPLIED (docs/specs/add-cow.txt,
 * section 4) and a label naming what the plugin serves.
 *
 * Without addcow-local-image= every function here leaves the filter
 * as it is: local_image_enter returns the plugin below unchanged.
 */

#ifndef ADDCOW_LOCAL_IMAGE_H
#define ADDCOW_LOCAL_IMAGE_H

#include <stdbool.h>

#include <nbdkit-filter.h>

#include "blockdev.h"
#include "sidecar.h"

extern bool local_image_mode (void);

/* .config: 1 when KEY is this file's parameter (taken), 0 when it is
 * not (it is also noted when it may label the backing: url=, uri=,
 * file=), -1 on error.
 */
extern int local_image_config (const char *key, const char *value);

/* .config_complete: in local-image mode, point P at the local image
 * (as the image) and at the backing's label.  Errors go to
 * nbdkit_error.
 */
extern int local_image_config_complete (struct sidecar_params *p);

/* .get_ready: open (creating when missing) and lock the local image. */
extern int local_image_open (void);

/* .after_fork: a new, empty local image is sized to the backing's
 * size (NEXT: the plugin below), made durable.  SIDECAR_FRESH: the
 * sidecar has no bitmap yet; an empty image under a used sidecar is
 * refused.
 */
extern int local_image_size_new (nbdkit_next *next, bool sidecar_fresh);

/* .prepare of every connection: NEXT, the plugin below, becomes the
 * backing device (*BACKING, opened by the first connection, owned by
 * this file until local_image_close).
 */
extern int local_image_prepare (nbdkit_next *next,
                                struct qad_blockdev **backing);

/* At the top of every callback: the image the data path writes to.
 * In local-image mode that is the local file (presented through the
 * same struct nbdkit_next_ops as a plugin, used only by this filter's
 * own code, never handed to nbdkit), and NEXT becomes the device that
 * backing reads go through; otherwise NEXT itself.
 */
extern nbdkit_next *local_image_enter (nbdkit_next *next);

extern void local_image_close (void);

#endif /* ADDCOW_LOCAL_IMAGE_H */
