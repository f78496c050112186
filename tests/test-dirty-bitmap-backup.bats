#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# examples/incremental-backup.sh as a test: guestfish writes files into
# an ext4 filesystem through the filter; only the dirty extents read
# from the dirty-bitmap:NAME view are copied; the backup equals the disk.

load functions.sh

@test "dirty-bitmap: incremental backup example (guestfish, nbdcopy, dirty extents)" {
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_file "$abs_top_srcdir/examples/incremental-backup.sh"
  requires_nbdsh
  requires guestfish --version
  requires nbdcopy --version
  requires which mkfs.ext4
  run env DIRTY_BITMAP_FILTER="$DIRTY_BITMAP_FILTER" QAD_IMG="$QAD_IMG" \
    timeout 600 "$abs_top_srcdir/examples/incremental-backup.sh" \
    "$BATS_TEST_TMPDIR/work"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"backup equals disk; copied"* ]]
  grep "backup equals disk; copied\|second increment" <<<"$output" |
    sed 's/^/# /' >&3
}
