/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Overflow-checked arithmetic.  Each returns true when the result
 * overflowed (and then *r is unspecified).  Use these on every value
 * that was read from a file.
 */

#ifndef QAD_CHECKED_OVERFLOW_H
#define QAD_CHECKED_OVERFLOW_H

#include <stdbool.h>
#include <stdint.h>

#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define SUB_OVERFLOW(a, b, r) __builtin_sub_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

/* True when [off, off+len) lies inside [0, limit), without overflow. */
static inline bool
range_within (uint64_t off, uint64_t len, uint64_t limit)
{
  uint64_t end;

  if (ADD_OVERFLOW (off, len, &end))
    return false;
  return end <= limit;
}

#endif /* QAD_CHECKED_OVERFLOW_H */
