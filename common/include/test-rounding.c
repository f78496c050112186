/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include "rounding.h"

int
main (void)
{
  assert (ROUND_DOWN (UINT64_C (4097), 4096) == 4096);
  assert (ROUND_UP (UINT64_C (4097), 4096) == 8192);
  assert (ROUND_UP (UINT64_C (4096), 4096) == 4096);
  assert (ROUND_DOWN (UINT64_C (0xffffffffffffffff), 512)
          == UINT64_C (0xfffffffffffffe00));
  assert (IS_ALIGNED (UINT64_C (8192), 4096));
  assert (!IS_ALIGNED (UINT64_C (8193), 4096));
  assert (div_round_up (0, 8) == 0);
  assert (div_round_up (9, 8) == 2);
  assert (div_round_up (UINT64_MAX, 2) == UINT64_C (1) << 63);
  return 0;
}
