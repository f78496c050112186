/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <errno.h>

#include "qad-error.h"
#include "qad-limits.h"

struct qad_limits qad_limits = {
  .max_table_bytes = QAD_DEFAULT_MAX_TABLE_BYTES,
  .max_bitmap_bytes = QAD_DEFAULT_MAX_BITMAP_BYTES,
  .max_qdb_bytes = QAD_DEFAULT_MAX_QDB_BYTES,
};

int
qad_set_limit (const char *key, const char *value, int64_t parsed,
               uint64_t *limit)
{
  if (parsed == -1)
    return -1;
  if (parsed < 4096) {
    qad_error ("%s=%s: must be at least 4K", key, value);
    errno = EINVAL;
    return -1;
  }
  *limit = parsed;
  return 0;
}
