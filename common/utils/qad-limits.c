/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include "qad-limits.h"

struct qad_limits qad_limits = {
  .max_table_bytes = QAD_DEFAULT_MAX_TABLE_BYTES,
  .max_bitmap_bytes = QAD_DEFAULT_MAX_BITMAP_BYTES,
  .max_qdb_bytes = QAD_DEFAULT_MAX_QDB_BYTES,
};
