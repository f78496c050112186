/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Tests of poisoned.h: a poisoned image refuses with EIO, through
 * errno (common/) or an nbdkit *err (glue); a healthy one leaves the
 * error alone.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <errno.h>
#include "poisoned.h"

int
main (void)
{
  int err = ENOSPC;

  assert (refuse_if_poisoned (false, &err) == 0 && err == ENOSPC);
  assert (refuse_if_poisoned (true, &err) == -1 && err == EIO);
  errno = 0;
  assert (refuse_if_poisoned (false, &errno) == 0 && errno == 0);
  assert (refuse_if_poisoned (true, &errno) == -1 && errno == EIO);
  return 0;
}
