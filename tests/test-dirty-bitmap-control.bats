#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# The dirty-bitmap filter's control socket (dirty-bitmap-control=):
# qad-img bitmap|info --connect, atomic multi-operation commands under
# concurrent writers, a kill -9 in the middle of it all, and hostile
# control clients.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

L () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-live.py" "$@"; }

serve ()
{
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-control="$PWD/ctl" "$@"
}

@test "dirty-bitmap control: commands, info, socket mode and lifetime" {
  truncate -s 16M disk.raw
  serve dirty-bitmap-name=b1
  [ "$(stat -c %a ctl)" = 600 ]
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"a" * 4096, 65536)'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 -g 4K --add b3 \
    --merge b1 --into b3 --disable b1
  run "$QAD_IMG" info --connect="$PWD/ctl"
  echo "$output"
  [[ "$output" == *"b1: disabled, granularity 65536, disk size 16777216, 65536 dirty bytes"* ]]
  [[ "$output" == *"b2: enabled, granularity 4096, disk size 16777216, 0 dirty bytes"* ]]
  [[ "$output" == *"b3: enabled, granularity 65536, disk size 16777216, 65536 dirty bytes"* ]]
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"b" * 512, 8192)'
  run "$QAD_IMG" info --connect "$PWD/ctl" --json
  echo "$output"
  python3 -c '
import json, sys
d = {b["name"]: b for b in json.load(sys.stdin)["bitmaps"]}
assert d["b1"]["dirty-bytes"] == 65536 and not d["b1"]["enabled"]
assert d["b2"]["dirty-bytes"] == 4096 and d["b2"]["state"] == "enabled"
assert d["b3"]["dirty-bytes"] == 131072
' <<<"$output"
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --clear b3 --remove b1 --enable b2
  # Errors come back as one line naming the problem; nothing changes.
  expect_fail_cleanly 'no bitmap named "nosuch"' \
    "$QAD_IMG" bitmap --connect="$PWD/ctl" --remove b2 --remove nosuch
  expect_fail_cleanly 'bitmap "b2" already exists' \
    "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2
  expect_fail_cleanly 'is not frozen' \
    "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b2
  expect_fail_cleanly 'connect' \
    "$QAD_IMG" info --connect="$PWD/nosuch"
  # The file follows every command (and is still locked by the server).
  expect_fail_cleanly 'locked' "$QAD_IMG" bitmap disk.qdb --remove b2
  stop_nbdkit sock
  [ ! -e ctl ]
  run "$QAD_IMG" info disk.qdb
  echo "$output"
  [[ "$output" == *"b2: enabled, granularity 4096, disk size 16777216, 1 dirty granules"* ]]
  [[ "$output" == *"b3: enabled, granularity 65536, disk size 16777216, 0 dirty granules"* ]]
  [[ "$output" != *"b1:"* ]]
  "$QAD_IMG" check disk.qdb
  expect_fail_cleanly 'only possible while the file is served' \
    "$QAD_IMG" bitmap disk.qdb --freeze b2
}

@test "dirty-bitmap control: a live socket is refused, a stale one replaced" {
  truncate -s 16M disk.raw other.raw
  serve
  expect_fail_cleanly 'in use by another server' \
    nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file other.raw \
    dirty-bitmap="$PWD/other.qdb" dirty-bitmap-control="$PWD/ctl" --run true
  stop_nbdkit sock KILL
  [ -S ctl ]                    # stale after a kill
  serve
  "$QAD_IMG" info --connect="$PWD/ctl"
  stop_nbdkit sock
  touch notasocket
  expect_fail_cleanly 'exists and is not a socket' \
    nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file other.raw \
    dirty-bitmap="$PWD/other.qdb" dirty-bitmap-control="$PWD/notasocket" \
    --run true
  [ -f notasocket ]
}

@test "dirty-bitmap control: --add/--disable under concurrent writers, then kill -9: every write in some bitmap" {
  truncate -s 32M disk.raw
  serve dirty-bitmap-name=b1 dirty-bitmap-granularity=4K
  L atomic "$(nbd_uri sock)" "$PWD/ctl" "$QAD_IMG" 25 6 writes.log
  stop_nbdkit sock KILL
  run L covered disk.qdb 4096 writes.log
  echo "$output"
  [ "$status" -eq 0 ]
  echo "# $output" >&3
  "$QAD_IMG" check disk.qdb
}

@test "dirty-bitmap control: hostile, stalled and vanishing control clients" {
  truncate -s 16M disk.raw
  serve dirty-bitmap-name=b1
  run L hostile "$PWD/ctl" "$(nbd_uri sock)"
  echo "$output"
  [ "$status" -eq 0 ]
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
}

# Regression: a failed command used to leave the live model with the
# table offsets of its scratch copy, so later bits went to the wrong
# place in a file laid out by qad-img then extended by the filter.
@test "dirty-bitmap control: a failed command leaves tracking intact" {
  truncate -s 16M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=16M --bitmap=b1 -g 4K
  "$QAD_IMG" bitmap disk.qdb --add b2 -g 64K
  serve
  expect_fail_cleanly 'no bitmap named "nosuch"' \
    "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b3 --clear nosuch
  nbdsh -u "$(nbd_uri sock)" -c '
for i in range(0, 16 << 20, 1 << 20):
    h.pwrite(b"w" * 4096, i + 8192)
'
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
  for i in $(seq 0 15); do echo $(( (i * 256) + 2 )); done > want-b1
  for i in $(seq 0 15); do echo $(( i * 16 )); done > want-b2
  "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" compare disk.qdb b1 want-b1
  "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" compare disk.qdb b2 want-b2
}
