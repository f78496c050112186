/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef QAD_ISPOWEROF2_H
#define QAD_ISPOWEROF2_H

#include <stdbool.h>
#include <stdint.h>

static inline bool
is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* log2 of a power of 2 (undefined for other values: check first). */
static inline unsigned
log_2_bits (uint64_t v)
{
  return 63 - __builtin_clzll (v);
}

#endif /* QAD_ISPOWEROF2_H */
