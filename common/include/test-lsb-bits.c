/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Tests of lsb-bits.h: bit order, then every scan against a naive
 * bit-at-a-time reference, on fixed edge cases (unaligned starts, runs
 * crossing 64-bit words, the end of the map) and on random maps.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lsb-bits.h"

#define NBITS 1024              /* 16 words of 64 bits */

static uint8_t *map;

static uint64_t
ref_run (uint64_t start, uint64_t end)
{
  uint64_t n = start;

  while (n < end && bit_test (map, n) == bit_test (map, start))
    n++;
  return n - start;
}

static uint64_t
ref_count (uint64_t start, uint64_t end)
{
  uint64_t n, c = 0;

  for (n = start; n < end; ++n)
    c += bit_test (map, n);
  return c;
}

static void
check_range (uint64_t start, uint64_t end)
{
  uint64_t count = ref_count (start, end);
  uint64_t first = start;
  bool v;

  while (first < end && !bit_test (map, first))
    first++;
  assert (bits_count (map, start, end) == count);
  assert (bits_all_set (map, start, end) == (count == end - start));
  assert (bits_find_set (map, start, end) == first);
  if (start < end) {
    assert (bits_run (map, start, end, &v) == ref_run (start, end));
    assert (v == bit_test (map, start));
    assert (bits_run (map, start, end, NULL) == ref_run (start, end));
  }
}

/* Every start and end near the byte and word boundaries. */
static void
check_boundaries (void)
{
  static const uint64_t points[] = {
    0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 191, 200, 511, 512, 513,
    1000, 1015, 1016, 1017, 1023, NBITS
  };
  size_t i, j;

  for (i = 0; i < sizeof points / sizeof points[0]; ++i)
    for (j = i; j < sizeof points / sizeof points[0]; ++j)
      check_range (points[i], points[j]);
}

int
main (void)
{
  uint8_t b[3];
  uint64_t n, i;

  memset (b, 0, sizeof b);
  bit_set (b, 0);
  bit_set (b, 9);
  bit_set (b, 23);
  /* Least significant bit first within each byte. */
  assert (b[0] == 0x01 && b[1] == 0x02 && b[2] == 0x80);
  for (n = 0; n < 24; ++n)
    assert (bit_test (b, n) == (n == 0 || n == 9 || n == 23));
  bit_clear (b, 9);
  assert (b[1] == 0 && !bit_test (b, 9) && bit_test (b, 0));
  bit_clear (b, 9);             /* idempotent */
  assert (b[1] == 0);

  /* A map allocated to its exact size, so an overrun is an error
   * under the sanitizers.
   */
  map = malloc (NBITS / 8);
  assert (map != NULL);

  /* All clear, all set: one run to the end of the map. */
  memset (map, 0, NBITS / 8);
  check_boundaries ();
  assert (bits_run (map, 3, NBITS, NULL) == NBITS - 3);
  assert (bits_find_set (map, 0, NBITS) == NBITS);
  memset (map, 0xff, NBITS / 8);
  check_boundaries ();
  assert (bits_count (map, 5, NBITS) == NBITS - 5);

  /* A run of ones from an unaligned start across three 64-bit words,
   * ending one bit into a fourth.
   */
  memset (map, 0, NBITS / 8);
  bits_set_range (map, 61, 61 + 3 * 64 + 1);
  assert (!bit_test (map, 60) && bit_test (map, 61));
  assert (bit_test (map, 253) && !bit_test (map, 254));
  assert (bits_count (map, 0, NBITS) == 3 * 64 + 1);
  assert (bits_run (map, 61, NBITS, NULL) == 3 * 64 + 1);
  assert (bits_run (map, 62, NBITS, NULL) == 3 * 64);
  assert (bits_run (map, 0, NBITS, NULL) == 61);
  assert (bits_run (map, 254, NBITS, NULL) == NBITS - 254);
  assert (bits_find_set (map, 0, NBITS) == 61);
  assert (bits_find_set (map, 254, NBITS) == NBITS);
  assert (bits_all_set (map, 61, 254) && !bits_all_set (map, 60, 254));
  check_boundaries ();

  /* One bit differs at the very last position. */
  memset (map, 0, NBITS / 8);
  bit_set (map, NBITS - 1);
  assert (bits_run (map, 0, NBITS, NULL) == NBITS - 1);
  assert (bits_run (map, 0, NBITS - 1, NULL) == NBITS - 1);
  assert (bits_find_set (map, 1, NBITS) == NBITS - 1);
  assert (bits_count (map, NBITS - 1, NBITS) == 1);
  check_boundaries ();

  /* Empty ranges. */
  assert (bits_count (map, 9, 9) == 0);
  assert (bits_all_set (map, 9, 9));
  assert (bits_find_set (map, 9, 9) == 9);

  /* bits_set_range touches nothing outside its range. */
  srand (1);
  for (i = 0; i < 200; ++i) {
    uint64_t s = rand () % NBITS, e = s + rand () % (NBITS - s + 1);

    memset (map, 0, NBITS / 8);
    bits_set_range (map, s, e);
    assert (ref_count (0, NBITS) == e - s);
    assert (ref_count (s, e) == e - s);
  }

  /* Random maps, dense and sparse, random ranges. */
  for (i = 0; i < 3000; ++i) {
    int density = rand () % 4;
    uint64_t s, e, j;

    for (j = 0; j < NBITS / 8; ++j)
      map[j] = density == 0 ? 0 : density == 1 ? 0xff : (uint8_t) rand ();
    if (density == 3)           /* long runs with the odd flipped bit */
      for (j = 0; j < 4; ++j) {
        s = rand () % NBITS;
        e = s + rand () % (NBITS - s + 1);
        bits_set_range (map, s, e);
        map[rand () % (NBITS / 8)] ^= 1 << (rand () % 8);
      }
    s = rand () % (NBITS + 1);
    e = s + rand () % (NBITS - s + 1);
    check_range (s, e);
  }

  free (map);
  return 0;
}
