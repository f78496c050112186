/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Bit arrays, least significant bit first: bit n is bit (n % 8) of
 * byte n / 8.  The add-cow COW bitmap and QDB bitmaps are stored this
 * way, and the QED check uses it for its used-cluster map.  No locking
 * here: every byte is shared by 8 bits, so callers lock.
 */

#ifndef QAD_LSB_BITS_H
#define QAD_LSB_BITS_H

#include <stdbool.h>
#include <stdint.h>

static inline bool
bit_test (const uint8_t *bits, uint64_t n)
{
  return (bits[n >> 3] >> (n & 7)) & 1;
}

static inline void
bit_set (uint8_t *bits, uint64_t n)
{
  bits[n >> 3] |= 1 << (n & 7);
}

static inline void
bit_clear (uint8_t *bits, uint64_t n)
{
  bits[n >> 3] &= ~(1 << (n & 7));
}

#endif /* QAD_LSB_BITS_H */
