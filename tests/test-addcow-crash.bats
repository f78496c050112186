#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Crash consistency: kill -9 the server during a random workload of
# concurrent tagged writes and flushes, restart, and check that every
# flushed write reads back and that no sector holds data that was
# never written there (a set bit whose data never reached the image
# would show up as such a sector: stale image bytes or zeroes instead
# of the backing file's).  Several rounds on the same files.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_file "$ADDCOW_WORKLOAD"
  cd "$BATS_TEST_TMPDIR"
}

crash_rounds ()
{
  local rounds="$1"; shift
  local i
  for i in $(seq 1 "$rounds"); do
    start_addcow s "$@"
    "$ADDCOW_WORKLOAD" crash "$(nbd_uri s)" . "$i" > crash.out &
    local client=$!
    # Let it run for 0.3 .. 1.2 s, then kill the server hard.
    sleep "0.$((3 + RANDOM % 9))"
    stop_nbdkit s KILL
    wait "$client"
    cat crash.out
    start_addcow s
    "$ADDCOW_WORKLOAD" crash-verify "$(nbd_uri s)" .
    stop_nbdkit s
  done
}

@test "addcow crash: kill -9 during writes, 64K clusters, raw backing" {
  random_file base.img $((8 * 1024 * 1024)) 61
  random_file disk.raw $((8 * 1024 * 1024)) 62    # stale bytes in the image
  reference_of base.img 8M flushed.ref
  crash_rounds 4 addcow-backing=base.img
}

@test "addcow crash: kill -9 during writes, 4K clusters, no backing" {
  random_file disk.raw $((4 * 1024 * 1024)) 63
  truncate -s 4M flushed.ref
  crash_rounds 3 addcow-cluster-size=4K
}
