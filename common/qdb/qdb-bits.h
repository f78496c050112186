/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Bit arrays in QDB order: bit n is bit (n % 8) of byte n / 8, least
 * significant bit first.  No locking here: callers lock.
 */

#ifndef QAD_QDB_BITS_H
#define QAD_QDB_BITS_H

#include <stdbool.h>
#include <stdint.h>

#include "lsb-bits.h"

/* True when every bit in [first, last] is set. */
static inline bool
qdb_bits_all_set (const uint8_t *bits, uint64_t first, uint64_t last)
{
  uint64_t n = first;

  while (n <= last && (n & 7))
    if (!bit_test (bits, n++))
      return false;
  while (n + 7 <= last) {
    if (bits[n >> 3] != 0xff)
      return false;
    n += 8;
  }
  while (n <= last)
    if (!bit_test (bits, n++))
      return false;
  return true;
}

/* Set every bit in [first, last]. */
static inline void
qdb_bits_set_range (uint8_t *bits, uint64_t first, uint64_t last)
{
  uint64_t n = first;

  while (n <= last && (n & 7))
    bit_set (bits, n++);
  while (n + 7 <= last) {
    bits[n >> 3] = 0xff;
    n += 8;
  }
  while (n <= last)
    bit_set (bits, n++);
}

/* Length of the run of bits equal to bit FIRST, starting at FIRST and
 * stopping at LIMIT (exclusive).
 */
static inline uint64_t
qdb_bits_run (const uint8_t *bits, uint64_t first, uint64_t limit)
{
  bool v = bit_test (bits, first);
  uint8_t whole = v ? 0xff : 0;
  uint64_t n = first + 1;

  while (n < limit && (n & 7))
    if (bit_test (bits, n) != v)
      return n - first;
    else
      n++;
  while (n + 8 <= limit && bits[n >> 3] == whole)
    n += 8;
  while (n < limit && bit_test (bits, n) == v)
    n++;
  return n - first;
}

#endif /* QAD_QDB_BITS_H */
