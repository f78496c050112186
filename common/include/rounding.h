/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Rounding to multiples of a power of 2.  The caller guarantees that
 * the result does not overflow (check with checked-overflow.h first
 * for values read from disk).
 */

#ifndef QAD_ROUNDING_H
#define QAD_ROUNDING_H

#include <stdint.h>

#define ROUND_DOWN(i, n) ((i) & ~((__typeof__ (i)) (n) - 1))
#define ROUND_UP(i, n) ROUND_DOWN ((i) + (n) - 1, (n))
#define IS_ALIGNED(i, n) (((i) & ((__typeof__ (i)) (n) - 1)) == 0)

/* Division rounding up, safe for any x (no x + d - 1 overflow). */
static inline uint64_t
div_round_up (uint64_t x, uint64_t d)
{
  return x / d + (x % d != 0);
}

#endif /* QAD_ROUNDING_H */
