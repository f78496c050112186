/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <stddef.h>

#include "qad-img.h"

/* Every format the tool knows.  Adding a format: write FORMAT-cmds.c
 * defining a struct qad_format, declare it in qad-img.h, list it here.
 */
const struct qad_format *const qad_formats[] = {
  &qed_format,
  &qdb_format,
  &addcow_format,
  NULL
};
