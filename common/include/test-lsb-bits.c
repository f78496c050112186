/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "lsb-bits.h"

int
main (void)
{
  uint8_t b[3];
  uint64_t n;

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
  return 0;
}
