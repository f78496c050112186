#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# examples/incremental-backup.sh as a test: a live incremental backup
# (freeze / copy dirty extents / release) while guestfish and a random
# writer keep writing; each increment equals the disk as of its freeze,
# and the backup's ext4 filesystem is clean.

load functions.sh

@test "dirty-bitmap: incremental backup example (guestfish, nbdcopy, dirty extents)" {
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_file "$abs_top_srcdir/examples/incremental-backup.sh"
  requires_nbdsh
  requires guestfish --version
  requires nbdcopy --version
  requires which mkfs.ext4
  requires which debugfs
  run env DIRTY_BITMAP_FILTER="$DIRTY_BITMAP_FILTER" QAD_IMG="$QAD_IMG" \
    timeout 600 "$abs_top_srcdir/examples/incremental-backup.sh" \
    "$BATS_TEST_TMPDIR/work"
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" == *"increment 2: copied"* ]]
  grep "increment [12]: copied" <<<"$output" | sed 's/^/# /' >&3
}
