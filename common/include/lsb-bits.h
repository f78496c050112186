/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Bit arrays, least significant bit first: bit n is bit (n % 8) of
 * byte n / 8.  The add-cow COW bitmap and QDB bitmaps are stored this
 * way, and the QED check uses it for its used-cluster map.  No locking
 * here: every byte is shared by 8 bits, so callers lock.
 *
 * Design notes: this is the one home of the scanning primitives (runs,
 * counts, ranges) for every format.  Ranges are half-open [start, end)
 * in bits.  Scans step a bit at a time to a byte boundary, a byte at a
 * time to a 64-bit boundary, then a 64-bit word at a time; a word is
 * compared whole (all 0 or all 1) or popcounted, so its byte order
 * never matters and it is loaded with memcpy (no alignment needed).
 */

#ifndef QAD_LSB_BITS_H
#define QAD_LSB_BITS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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

/* The 64 bits at N, N a multiple of 64, as one word (host order). */
static inline uint64_t
bits_word64 (const uint8_t *bits, uint64_t n)
{
  uint64_t w;

  memcpy (&w, bits + (n >> 3), sizeof w);
  return w;
}

/* Length of the run of bits in [START, END) equal to bit START; *VALUE
 * (when not NULL) gets that bit.  START < END.
 */
static inline uint64_t
bits_run (const uint8_t *bits, uint64_t start, uint64_t end, bool *value)
{
  const bool v = bit_test (bits, start);
  const uint8_t byte = v ? 0xff : 0;
  const uint64_t word = v ? UINT64_MAX : 0;
  uint64_t n = start + 1;

  if (value)
    *value = v;
  for (; n < end && (n & 7); ++n)
    if (bit_test (bits, n) != v)
      return n - start;
  for (; n + 8 <= end && (n & 63); n += 8)
    if (bits[n >> 3] != byte)
      goto tail;
  for (; n + 64 <= end; n += 64)
    if (bits_word64 (bits, n) != word)
      break;
  for (; n + 8 <= end; n += 8)
    if (bits[n >> 3] != byte)
      break;
 tail:
  while (n < end && bit_test (bits, n) == v)
    n++;
  return n - start;
}

/* Number of bits set in [START, END). */
static inline uint64_t
bits_count (const uint8_t *bits, uint64_t start, uint64_t end)
{
  uint64_t n = start, count = 0;

  for (; n < end && (n & 7); ++n)
    count += bit_test (bits, n);
  for (; n + 8 <= end && (n & 63); n += 8)
    count += __builtin_popcount (bits[n >> 3]);
  for (; n + 64 <= end; n += 64)
    count += __builtin_popcountll (bits_word64 (bits, n));
  for (; n + 8 <= end; n += 8)
    count += __builtin_popcount (bits[n >> 3]);
  for (; n < end; ++n)
    count += bit_test (bits, n);
  return count;
}

/* True when every bit in [START, END) is set (also when it is empty). */
static inline bool
bits_all_set (const uint8_t *bits, uint64_t start, uint64_t end)
{
  bool v;

  return start >= end || (bits_run (bits, start, end, &v) == end - start && v);
}

/* Index of the first set bit in [START, END), or END when none is. */
static inline uint64_t
bits_find_set (const uint8_t *bits, uint64_t start, uint64_t end)
{
  bool v;

  if (start < end && !bit_test (bits, start))
    start += bits_run (bits, start, end, &v);
  return start;
}

/* Set every bit in [START, END). */
static inline void
bits_set_range (uint8_t *bits, uint64_t start, uint64_t end)
{
  uint64_t n = start;

  for (; n < end && (n & 7); ++n)
    bit_set (bits, n);
  if (n + 8 <= end) {
    memset (bits + (n >> 3), 0xff, (end - n) >> 3);
    n += (end - n) & ~UINT64_C (7);
  }
  for (; n < end; ++n)
    bit_set (bits, n);
}

#endif /* QAD_LSB_BITS_H */
