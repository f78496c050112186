/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include "ispowerof2.h"

int
main (void)
{
  unsigned i;

  assert (!is_power_of_2 (0));
  assert (!is_power_of_2 (3));
  assert (!is_power_of_2 (UINT64_MAX));
  for (i = 0; i < 64; ++i) {
    assert (is_power_of_2 (UINT64_C (1) << i));
    assert (log_2_bits (UINT64_C (1) << i) == i);
    if (i > 1)
      assert (!is_power_of_2 ((UINT64_C (1) << i) + 1));
  }
  return 0;
}
