/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* QDB's old names for the lsb-bits.h scans, with QDB's inclusive
 * [first, last] ranges.  There is no second implementation here: each
 * is one call to lsb-bits.h.  They remain only for qdb.c, qdb-ops.c
 * and the dirty-bitmap filter, which are being restructured; new code
 * calls lsb-bits.h directly, and this header goes when they do.
 */

#ifndef QAD_QDB_BITS_H
#define QAD_QDB_BITS_H

#include <stdbool.h>
#include <stdint.h>

#include "lsb-bits.h"

static inline bool
qdb_bits_all_set (const uint8_t *bits, uint64_t first, uint64_t last)
{
  return bits_all_set (bits, first, last + 1);
}

static inline void
qdb_bits_set_range (uint8_t *bits, uint64_t first, uint64_t last)
{
  bits_set_range (bits, first, last + 1);
}

static inline uint64_t
qdb_bits_run (const uint8_t *bits, uint64_t first, uint64_t limit)
{
  return bits_run (bits, first, limit, NULL);
}

#endif /* QAD_QDB_BITS_H */
