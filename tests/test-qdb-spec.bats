#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# qad-img follows the rules of docs/specs/qdb.txt that an independent
# implementation found unclear or unenforced (issue 13): unknown
# autoclear bits, IN_USE bitmaps, clear to all dirty, one disk size per
# file, a partial cluster at the end, a disk of size 0.

load functions.sh

setup ()
{
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
}

# poke OFFSET FORMAT VALUE: write a big-endian field of disk.qdb.
poke ()
{
  python3 -c '
import struct, sys
with open("disk.qdb", "r+b") as f:
    f.seek(int(sys.argv[1])); f.write(struct.pack(">" + sys.argv[2], int(sys.argv[3], 0)))' "$@"
}

# Header field offsets, and the first directory entry at cluster 1
# (default cluster size 64K); entries of one-letter names are 48 bytes.
AUTOCLEAR=48
ENTRY0=65536
ENTRY1=$((65536 + 48))
DISK_SIZE=8
FLAGS=24

@test "qdb spec: every writing verb clears unknown autoclear bits" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=a
  poke $AUTOCLEAR Q 0x8
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"autoclear 0x8"* ]]
  # check without --repair only reads.
  "$QAD_IMG" check disk.qdb
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"autoclear 0x8"* ]]
  "$QAD_IMG" bitmap disk.qdb --add b
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"autoclear 0x0"* ]]
  # check --repair writes the file even with no leak to reclaim.
  poke $AUTOCLEAR Q 0x8
  "$QAD_IMG" check disk.qdb --repair
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"autoclear 0x0"* ]]
}

@test "qdb spec: an IN_USE bitmap may only be cleared or removed" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=a --bitmap=b
  poke $((ENTRY0 + FLAGS)) H 0x3
  for op in "--enable a" "--disable a" "--merge a --into b" \
            "--merge b --into a"; do
    expect_fail_cleanly '"a" has the IN_USE flag' \
      "$QAD_IMG" bitmap disk.qdb $op
  done
  "$QAD_IMG" bitmap disk.qdb --clear a
  run "$QAD_IMG" info disk.qdb --json
  [[ "$output" == *'"name": "a", "enabled": true, "in-use": false'* ]]
  poke $((ENTRY0 + FLAGS)) H 0x3
  "$QAD_IMG" bitmap disk.qdb --dirty-all a
  run "$QAD_IMG" info disk.qdb --json
  [[ "$output" == *'"name": "a", "enabled": true, "in-use": false'* ]]
  poke $((ENTRY0 + FLAGS)) H 0x3
  "$QAD_IMG" bitmap disk.qdb --remove a
  run "$QAD_IMG" info disk.qdb
  [[ "$output" != *"a: "* ]]
}

@test "qdb spec: bitmap --dirty-all resets a bitmap to all dirty" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1000000 --bitmap=a \
    --bitmap=b -g 64K
  "$QAD_IMG" bitmap disk.qdb --dirty-all a
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"a: enabled, granularity 65536, disk size 1000000, 16 dirty granules, 1000000 dirty bytes"* ]]
  [[ "$output" == *"b: enabled, granularity 65536, disk size 1000000, 0 dirty granules"* ]]
  run "$QAD_IMG" map disk.qdb --bitmap=a
  [ "$output" = "0 1000000 dirty" ]
  "$QAD_IMG" check disk.qdb
  "$QAD_IMG" bitmap disk.qdb --clear a
  run "$QAD_IMG" map disk.qdb --bitmap=a
  [ "$output" = "0 1000000 clean" ]
}

@test "qdb spec: every bitmap of a file has the same disk size" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=a --bitmap=b
  expect_fail_cleanly 'disk size 2097152 differs' \
    "$QAD_IMG" bitmap disk.qdb --add c --size=2M
  poke $((ENTRY1 + DISK_SIZE)) Q 2097152
  run "$QAD_IMG" check disk.qdb
  [ "$status" -eq 2 ]
  [[ "$output" == *'bitmap "b": disk_size 2097152 differs from bitmap "a"'* ]]
}

@test "qdb spec: a partial cluster at the end of the file is a leak" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=a
  truncate -s +100 disk.qdb
  run "$QAD_IMG" check disk.qdb
  [ "$status" -eq 3 ]
  [[ "$output" == *"1 leaked clusters"* ]]
  "$QAD_IMG" check disk.qdb --repair
  [ $(( $(stat -c %s disk.qdb) % 65536 )) -eq 0 ]
  "$QAD_IMG" check disk.qdb
}

@test "qdb spec: a disk of size 0" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=0 --bitmap=a
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"a: enabled, granularity 65536, disk size 0, 0 dirty granules"* ]]
  "$QAD_IMG" bitmap disk.qdb --dirty-all a --add b
  run "$QAD_IMG" map disk.qdb --bitmap=a
  [ "$output" = "" ]
  "$QAD_IMG" check disk.qdb
  # No table, so bitmap_table_offset must be 0.
  poke $ENTRY0 Q 65536
  expect_fail_cleanly 'bitmap_table_offset 65536 with bitmap_table_size 0' \
    "$QAD_IMG" check disk.qdb
}
