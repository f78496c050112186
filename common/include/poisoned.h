/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The one answer to a write or flush on a poisoned image.
 *
 * Design notes: after a failed fdatasync an image (QED), a sidecar
 * (add-cow's store) or a bitmap file (dirty-bitmap) is poisoned: the
 * failure was logged once when it happened, and from then on every
 * write and flush fails with EIO until the image is reopened, so that
 * no later flush can be reported as successful (see the durability
 * rules in docs/).  common/ passes &errno, the nbdkit glue its *err;
 * no nbdkit header is needed.
 */

#ifndef QAD_POISONED_H
#define QAD_POISONED_H

#include <errno.h>
#include <stdbool.h>

/* -1 with *ERR = EIO when POISONED, else 0. */
static inline int
refuse_if_poisoned (bool poisoned, int *err)
{
  if (poisoned) {
    *err = EIO;
    return -1;
  }
  return 0;
}

#endif /* QAD_POISONED_H */
