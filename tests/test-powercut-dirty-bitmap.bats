#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Simulated power cuts of the dirty-bitmap filter over nbdkit's file
# plugin (tests/powercut/): in every crash state the QDB file parses,
# every granule that differs from the disk before the workload is
# dirty in it, and every flushed or FUA write is on the disk.  The
# checker must catch flushes that are thrown away (nbdkit's fua filter
# with fuamode=discard above the filter).

load functions.sh
load powercut/powercut.sh

teardown () { pc_teardown; }

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  pc_requires
  pc_random live/disk.raw $PC_SIZE 5
}

@test "powercut dirty-bitmap: over the file plugin" {
  pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap
  test "$status" -eq 0
  pc_samples dirty-bitmap
}

# The QDB file is made by the recorded server: it is written under a
# new name and renamed over the empty file, so a crash while the server
# starts leaves the empty file (filled again at the next start) or the
# whole new one.  pc-check's status 3 (a file the filter refuses) was a
# known failure before that; it fails the test now.
@test "powercut dirty-bitmap: the server creates the QDB file" {
  pc_record_fresh dirty-bitmap
  pc_check dirty-bitmap 1000
  test "$status" -eq 0
}

@test "powercut dirty-bitmap: the checker catches discarded flushes" {
  requires_filter fua
  PC_FILTERS=--filter=fua PC_PARAMS=fuamode=discard \
    pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap 500
  pc_expect_caught
}
