#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# add-cow filter, I/O errors: with tests/fault-inject.so, fail each
# write, sync, truncate and fallocate call site on the sidecar, then on
# the raw image the file plugin writes below the filter, in turn (EIO,
# then ENOSPC), and check the rules of the man page ("Errors"; the
# driver, fault-driver.py, says how).

load functions.sh

setup ()
{
  requires_file "$ADDCOW_FILTER"
  requires_file "$TESTS_BIN/.libs/fault-inject.so"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

# fault_driver MODE: run fault-driver.py MODE (addcow, addcow-local)
# and check that both files were injected: a failed sync of either
# poisons, a failed write to the image (ENOSPC) fails only its request.
fault_driver ()
{
  run env SHIM="$TESTS_BIN/.libs/fault-inject.so" \
    ADDCOW_FILTER="$ADDCOW_FILTER" QAD_IMG="$QAD_IMG" \
    "$NBD_PYTHON" "$BATS_TEST_DIRNAME/fault-driver.py" "$1" "$BATS_TEST_TMPDIR"
  echo "$output"
  test "$status" -eq 0
  echo "# ${lines[-1]}" >&3
  grep -q "^# $1 sidecar sync #.*poisoned" <<<"$output"
  grep -q "^# $1 sidecar write #" <<<"$output"
  grep -q "^# $1 image sync #.*poisoned" <<<"$output"
  grep -q "^# $1 image write #.* ENOSPC .*failed (ENOSPC), not poisoned" <<<"$output"
}

@test "addcow faults: every call site on the sidecar and the image fails in turn" {
  fault_driver addcow
}

# The image is a local file the filter writes itself: its own writes
# and syncs are injected.
@test "addcow faults: with addcow-local-image=, the local image's call sites too" {
  fault_driver addcow-local
}
