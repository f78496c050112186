/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Write path (being written). */

#include <config.h>

#include <stdlib.h>

#include "qed-image.h"

int
qed_close_writable (struct qed_image *img)
{
  return 0;
}

void
qed_free_write_state (struct qed_image *img)
{
}
