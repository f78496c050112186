#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Point-in-time view of a frozen bitmap (--freeze / --release): writers
# keep writing while the dirty extents of dirty-bitmap:b1 are copied;
# the copy must be the disk as of the freeze, which the workload
# reconstructs from its own write log (every writer's sequential writes
# cut at one point during the command).  Over the file plugin and under
# the add-cow filter; then a kill -9 during a freeze.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

L () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-live.py" "$@"; }

pit ()
{
  run L pit "$(nbd_uri sock)" "$(nbd_uri sock dirty-bitmap:b1)" "$PWD/ctl" \
    "$QAD_IMG" initial.raw backup.raw 4
  echo "$output"
  [ "$status" -eq 0 ]
  echo "# $output" >&3
  # The scratch file is gone after the release (it was never linked).
  [ -z "$(ls -A scratch)" ]
}

@test "dirty-bitmap freeze: point-in-time copy while writers write (file plugin)" {
  mkdir scratch
  head -c 32M /dev/urandom > disk.raw
  cp disk.raw initial.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-granularity=16K dirty-bitmap-control="$PWD/ctl" \
    dirty-bitmap-scratch-dir=scratch
  pit
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
}

@test "dirty-bitmap freeze: point-in-time copy while writers write (under add-cow)" {
  requires_file "$ADDCOW_FILTER"
  mkdir scratch
  head -c 32M /dev/urandom > base.img
  truncate -s 32M disk.raw
  cp base.img initial.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" --filter="$ADDCOW_FILTER" \
    file disk.raw addcow=disk.add-cow addcow-backing=base.img \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  pit
  stop_nbdkit sock
}

@test "dirty-bitmap freeze: kill -9 during a freeze leaves b1 disabled, no scratch" {
  mkdir scratch
  truncate -s 8M disk.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"1" * 65536, 0)'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 --freeze b1
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"2" * 65536, 0)'
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" \
    -c 'assert h.pread(65536, 0) == b"1" * 65536'
  run "$QAD_IMG" info --connect="$PWD/ctl"
  [[ "$output" == *"b1: frozen"* ]]
  # The view is read-only.
  run nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" -c 'h.pwrite(b"x", 0)'
  [ "$status" -ne 0 ]
  stop_nbdkit sock KILL
  [ -z "$(ls -A scratch)" ]
  run "$QAD_IMG" info disk.qdb
  echo "$output"
  [[ "$output" == *"b1: disabled, granularity 65536, disk size 8388608, 1 dirty granules"* ]]
  [[ "$output" == *"b2: enabled, granularity 65536, disk size 8388608, 1 dirty granules"* ]]
  # Restart: b1 is an ordinary disabled bitmap, its view reads today's disk.
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-control="$PWD/ctl"
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" \
    -c 'assert h.pread(65536, 0) == b"2" * 65536'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --freeze b1
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b1 --remove b1
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
}
