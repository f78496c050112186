#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Extents of the view dirty-bitmap:NAME: a dirty range that is known to
# read as zeroes is zero (NBD type 2), so that a copy can write zeroes
# cheaply; other dirty ranges are data (0); clean ones stay holes (1).
# Known means the plugin below says so, or, for a frozen view, the copy
# kept in the scratch file is all zero: the disk's extents of today say
# nothing about a granule overwritten since the freeze.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_nbdsh
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
  truncate -s 8M disk.raw
}

# types URI: one line "first_granule-last_granule type" per run of
# 64K granules with the same extent type (for the views, whose
# extents are whole granules; on the disk an extent may cut a granule).
types ()
{
  nbdinfo --map --json "$1" > map.json
  python3 -c '
import json
g = 65536
runs = []
for e in json.load(open("map.json")):
    first, last = e["offset"] // g, (e["offset"] + e["length"] - 1) // g
    if runs and runs[-1][2] == e["type"] and runs[-1][1] + 1 == first:
        runs[-1][1] = last
    else:
        runs.append([first, last, e["type"]])
for first, last, t in runs:
    print("%d-%d %d" % (first, last, t))
'
}

# Granules 1, 2: data; 3 to 5: zeroed (the file plugin punches holes);
# 10: zero bytes written as data (the plugin says data: not known to
# be zero, so data); 127: trimmed.
workload ()
{
  nbdsh -u "$(nbd_uri sock)" -c '
g = 65536
h.pwrite(b"A" * g, 1 * g)
h.pwrite(b"B" * g, 2 * g)
h.zero(3 * g, 3 * g)
h.pwrite(bytes(g), 10 * g)
h.trim(g, 127 * g)
h.flush()
'
}

expected="0-0 1
1-2 0
3-5 2
6-9 1
10-10 0
11-126 1
127-127 2"

@test "dirty-bitmap view zero: dirty zeroes are type 2, clean stays hole" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-granularity=64K
  workload
  run types "$(nbd_uri sock dirty-bitmap:b1)"
  [ "$status" -eq 0 ]
  echo "$output"
  [ "$output" = "$expected" ]
}

@test "dirty-bitmap view zero: a plugin that cannot tell gives data, never zero" {
  requires nbdkit --filter=noextents null --dump-plugin
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" --filter=noextents \
    file disk.raw dirty-bitmap=disk.qdb dirty-bitmap-name=b1 \
    dirty-bitmap-granularity=64K
  workload
  run types "$(nbd_uri sock dirty-bitmap:b1)"
  [ "$status" -eq 0 ]
  echo "$output"
  [ "$output" = "0-0 1
1-5 0
6-9 1
10-10 0
11-126 1
127-127 0" ]
}

@test "dirty-bitmap view zero: a frozen view answers from the freeze, not from today's disk" {
  mkdir scratch
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-granularity=64K \
    dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  workload
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 --freeze b1
  # After the freeze: granule 2 (was "B") is zeroed, 3 and 4 (were
  # zero) get data, 127 (was trimmed) gets data.  Their copies in the
  # scratch file decide; today's disk says the opposite.
  nbdsh -u "$(nbd_uri sock)" -c '
g = 65536
h.zero(g, 2 * g)
h.pwrite(b"C" * g, 3 * g)
h.pwrite(b"D" * 2 * g, 4 * g + 4096)
h.pwrite(b"E" * g, 127 * g)
h.flush()
'
  run types "$(nbd_uri sock)"
  echo "$output"
  [[ "$output" == *"2-2 3"* ]]
  run types "$(nbd_uri sock dirty-bitmap:b1)"
  [ "$status" -eq 0 ]
  echo "$output"
  [ "$output" = "$expected" ]
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" -c '
g = 65536
assert h.pread(g, 2 * g) == b"B" * g
assert h.pread(3 * g, 3 * g) == bytes(3 * g)
assert h.pread(g, 127 * g) == bytes(g)
'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b1
  # Released: b1's view reads today's disk, and says so.
  run types "$(nbd_uri sock dirty-bitmap:b1)"
  echo "$output"
  [[ "$output" == *"2-2 2"* ]]
  [[ "$output" == *"3-3 0"* ]]
}
