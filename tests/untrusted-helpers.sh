# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the test-*-untrusted.bats files.  Load after
# functions.sh.

# untrusted_tree: in the current directory, the layout the backing
# policy tests use:
#   d/           the directory of the image (or sidecar) under test
#   d/in.raw     an allowed backing file ("INSIDE-DATA" at offset 0)
#   out.raw      outside d/ ("OUTSIDE-DATA")
#   extra/e.raw  allowed only with a backing directory ("EXTRA-DATA")
untrusted_tree ()
{
  mkdir d extra
  printf 'INSIDE-DATA' > d/in.raw
  printf 'OUTSIDE-DATA' > out.raw
  printf 'EXTRA-DATA' > extra/e.raw
  truncate -s 1M d/in.raw out.raw extra/e.raw
}
