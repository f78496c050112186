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

@test "addcow faults: every call site on the sidecar and the image fails in turn" {
  run env SHIM="$TESTS_BIN/.libs/fault-inject.so" \
    ADDCOW_FILTER="$ADDCOW_FILTER" QAD_IMG="$QAD_IMG" \
    python3 "$BATS_TEST_DIRNAME/fault-driver.py" addcow "$BATS_TEST_TMPDIR"
  echo "$output"
  test "$status" -eq 0
  echo "# ${lines[-1]}" >&3
  # Both files were injected; a failed sync of either poisons; a failed
  # write to the image (ENOSPC) fails only its request.
  grep -q "^# addcow sidecar sync #.*poisoned" <<<"$output"
  grep -q "^# addcow sidecar write #" <<<"$output"
  grep -q "^# addcow image sync #.*poisoned" <<<"$output"
  grep -q "^# addcow image write #.* ENOSPC .*failed (ENOSPC), not poisoned" <<<"$output"
}

@test "addcow faults: with addcow-local-image=, the local image's call sites too" {
  run env SHIM="$TESTS_BIN/.libs/fault-inject.so" \
    ADDCOW_FILTER="$ADDCOW_FILTER" QAD_IMG="$QAD_IMG" \
    python3 "$BATS_TEST_DIRNAME/fault-driver.py" addcow-local \
    "$BATS_TEST_TMPDIR"
  echo "$output"
  test "$status" -eq 0
  echo "# ${lines[-1]}" >&3
  # The filter's own writes and syncs of the local image were injected:
  # a failed sync poisons, a failed write fails only its request.
  grep -q "^# addcow-local sidecar sync #.*poisoned" <<<"$output"
  grep -q "^# addcow-local image sync #.*poisoned" <<<"$output"
  grep -q "^# addcow-local image write #.* ENOSPC .*failed (ENOSPC), not poisoned" <<<"$output"
}
