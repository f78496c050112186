/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include "minmax.h"

int
main (void)
{
  int n = 0;

  assert (MIN (1, 2) == 1);
  assert (MAX (1, 2) == 2);
  assert (MIN (UINT64_MAX, (uint64_t) 5) == 5);
  /* Arguments are evaluated exactly once. */
  assert (MAX (n++, -1) == 0 && n == 1);
  return 0;
}
