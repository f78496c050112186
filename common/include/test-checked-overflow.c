/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include "checked-overflow.h"

int
main (void)
{
  uint64_t r;
  uint32_t r32;

  assert (!ADD_OVERFLOW (UINT64_C (1), UINT64_C (2), &r) && r == 3);
  assert (ADD_OVERFLOW (UINT64_MAX, UINT64_C (1), &r));
  assert (MUL_OVERFLOW (UINT64_C (1) << 32, UINT64_C (1) << 32, &r));
  assert (!MUL_OVERFLOW (UINT64_C (1) << 31, UINT64_C (2), &r)
          && r == UINT64_C (1) << 32);
  assert (MUL_OVERFLOW (UINT32_C (65536), UINT32_C (65536), &r32));
  assert (SUB_OVERFLOW (UINT64_C (1), UINT64_C (2), &r));

  assert (range_within (0, 10, 10));
  assert (!range_within (1, 10, 10));
  assert (!range_within (UINT64_MAX, 2, UINT64_MAX));
  assert (range_within (UINT64_MAX - 1, 1, UINT64_MAX));
  assert (range_within (10, 0, 10));
  assert (!range_within (11, 0, 10));
  return 0;
}
