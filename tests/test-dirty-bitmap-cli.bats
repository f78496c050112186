#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# qad-img on QDB files: create, info, map, check, bitmap operations;
# atomic replacement.

load functions.sh

setup ()
{
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
}

qdbread () { python3 "$BATS_TEST_DIRNAME/dirty-bitmap-qdbread.py" "$@"; }

# dirty NAME: the dirty granule list of bitmap NAME (independent reader).
dirty ()
{
  qdbread disk.qdb | python3 -c '
import json, sys
print(" ".join(map(str, json.load(sys.stdin)[sys.argv[1]]["dirty"])))' "$1"
}

# set_dirty NAME GRANULE...: serve a memory disk and write one byte in
# each granule (of 64K) through the filter.
set_dirty ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" memory 1M \
    dirty-bitmap=disk.qdb
  local g
  for g in "$@"; do
    nbdsh -u "$(nbd_uri sock)" -c "h.pwrite(b'x', $g * 65536 + 100)"
  done
  stop_nbdkit sock
}

@test "qad-img qdb: create, info, detection by magic" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=a --bitmap=b -g 4K
  run "$QAD_IMG" info disk.qdb
  [ "$status" -eq 0 ]
  [[ "$output" == *"format:          qdb (version 1)"* ]]
  [[ "$output" == *"a: enabled, granularity 4096, disk size 1048576, 0 dirty granules"* ]]
  [[ "$output" == *"b: enabled"* ]]
  # Positional size, cluster size.
  "$QAD_IMG" create --format=qdb two.qdb 10G --cluster-size=4K
  run "$QAD_IMG" info two.qdb --json
  [[ "$output" == *'"cluster-size": 4096'* ]]
  [[ "$output" == *'"name": "bitmap0"'* ]]
  [[ "$output" == *'"disk-size": 10737418240'* ]]
}

@test "qad-img qdb: create errors" {
  expect_fail_cleanly "usage" "$QAD_IMG" create --format=qdb x.qdb
  expect_fail_cleanly "granularity 1000" \
    "$QAD_IMG" create --format=qdb x.qdb --size=1M -g 1000
  expect_fail_cleanly "cluster-size" \
    "$QAD_IMG" create --format=qdb x.qdb --size=1M --cluster-size=4M
  expect_fail_cleanly "already exists" \
    "$QAD_IMG" create --format=qdb x.qdb --size=1M --bitmap=a --bitmap=a
  [ ! -e x.qdb ]
}

@test "qad-img qdb: map lists dirty and clean extents, --json, --dirty" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  set_dirty 2 3 15
  run "$QAD_IMG" map disk.qdb
  [ "$status" -eq 0 ]
  [ "$output" = "0 131072 clean
131072 131072 dirty
262144 720896 clean
983040 65536 dirty" ]
  run "$QAD_IMG" map disk.qdb --bitmap=bitmap0 --dirty --json
  python3 -c '
import json, sys
m = json.loads(sys.argv[1])
assert m == [{"start": 131072, "length": 131072, "dirty": True},
             {"start": 983040, "length": 65536, "dirty": True}], m
' "$output"
  run "$QAD_IMG" info disk.qdb --json
  [[ "$output" == *'"dirty-granules": 3, "dirty-bytes": 196608'* ]]
  expect_fail_cleanly 'no bitmap named "nope"' \
    "$QAD_IMG" map disk.qdb --bitmap=nope
}

@test "qad-img qdb: bitmap --add --remove --enable --disable --clear" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  set_dirty 1
  "$QAD_IMG" bitmap disk.qdb --add x -g 512 --add y
  run "$QAD_IMG" info disk.qdb --json
  [[ "$output" == *'"name": "x", "enabled": true, "in-use": false, "granularity": 512'* ]]
  [[ "$output" == *'"name": "y", "enabled": true, "in-use": false, "granularity": 65536'* ]]
  [ "$(dirty bitmap0)" = "1" ]
  "$QAD_IMG" bitmap disk.qdb --disable y --remove x
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"y: disabled"* ]]
  [[ "$output" != *"x: "* ]]
  set_dirty 4
  [ "$(dirty bitmap0)" = "1 4" ]
  [ "$(dirty y)" = "" ]
  "$QAD_IMG" bitmap disk.qdb --enable y --clear bitmap0
  set_dirty 5
  [ "$(dirty bitmap0)" = "5" ]
  [ "$(dirty y)" = "5" ]
  expect_fail_cleanly 'no bitmap named "zz"' \
    "$QAD_IMG" bitmap disk.qdb --clear zz
  expect_fail_cleanly 'already exists' "$QAD_IMG" bitmap disk.qdb --add y
  expect_fail_cleanly 'needs --into' "$QAD_IMG" bitmap disk.qdb --merge y
}

@test "qad-img qdb: bitmap --merge SRC --into DST (different granularities)" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  "$QAD_IMG" bitmap disk.qdb --add fine -g 4K --add coarse -g 256K
  set_dirty 1 9
  "$QAD_IMG" bitmap disk.qdb --clear bitmap0 --disable fine --disable coarse
  set_dirty 3
  "$QAD_IMG" bitmap disk.qdb --merge bitmap0 --into fine --merge fine --into coarse
  # fine (4K): its own bits 1 (64K+100) -> 16 and 9 -> 144; merging
  # bitmap0's granule 3 (64K) dirties all of 192K..256K: 48..63.
  [ "$(dirty fine)" = "16 $(seq -s ' ' 48 63) 144" ]
  # coarse (256K): 64K, 192K, 576K -> 0, 0, 2.
  [ "$(dirty coarse)" = "0 2" ]
  [ "$(dirty bitmap0)" = "3" ]
}

@test "qad-img qdb: changes replace the file atomically" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  chmod 0600 disk.qdb
  ino1=$(stat -c %i disk.qdb)
  "$QAD_IMG" bitmap disk.qdb --add other
  ino2=$(stat -c %i disk.qdb)
  [ "$ino1" != "$ino2" ]
  [ "$(stat -c %a disk.qdb)" = 600 ]
  # No temporary files left behind, on success or failure.
  run "$QAD_IMG" bitmap disk.qdb --remove nosuch
  [ "$status" -ne 0 ]
  [ "$(ls | grep -c tmp)" -eq 0 ]
  # A failed change leaves the file as it was.
  [ "$(stat -c %i disk.qdb)" = "$ino2" ]
}

@test "qad-img qdb: check finds leaks, --repair reclaims them" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  run "$QAD_IMG" check disk.qdb
  [ "$status" -eq 0 ]
  # The filter allocates data clusters; clearing afterwards rewrites
  # compactly.  Here, append an unreferenced cluster.
  truncate -s +65536 disk.qdb
  run "$QAD_IMG" check disk.qdb --json
  [ "$status" -eq 3 ]
  [[ "$output" == *'"leaks": 1'* ]]
  run "$QAD_IMG" check disk.qdb --repair
  [ "$status" -eq 0 ]
  run "$QAD_IMG" check disk.qdb
  [ "$status" -eq 0 ]
  [[ "$output" == *"0 leaked clusters"* ]]
}

@test "qad-img qdb: unknown autoclear bits are cleared, compat bits kept on rewrite" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=1M --bitmap=bitmap0
  poke disk.qdb 40 ">Q" 0x30
  poke disk.qdb 48 ">Q" 0x8
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"compatible 0x30, autoclear 0x8"* ]]
  requires_file "$DIRTY_BITMAP_FILTER"
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" memory 1M \
    dirty-bitmap=disk.qdb
  stop_nbdkit sock
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"compatible 0x30, autoclear 0x0"* ]]
}
