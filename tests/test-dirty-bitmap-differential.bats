#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter, differential: random writes, zeroes and trims
# from concurrent clients; the persisted bitmaps (read with the
# independent reader) must equal the granules the workload touched, as
# computed by the workload itself, across restarts, with several
# bitmaps of different granularities, some disabled.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

W () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" "$@"; }

# round NAME SEED: run 3 concurrent clients against a fresh server,
# logging to NAME-{0,1,2}.log, then stop the server.
round ()
{
  local name="$1" seed="$2" i pids=()
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" "${PLUGIN[@]}" \
    dirty-bitmap=disk.qdb
  for i in 0 1 2; do
    W run "$(nbd_uri sock)" "$((seed * 10 + i))" 150 "$name-$i.log" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
  stop_nbdkit sock
}

# expect_bitmap NAME GRANULARITY LOGS...: persisted bitmap NAME equals
# the granules touched by the logged requests.
expect_bitmap ()
{
  local name="$1" gran="$2"; shift 2
  W expect "$gran" "$@" > "want-$name"
  W compare disk.qdb "$name" "want-$name"
}

# check_view NAME: the live dirty-bitmap:NAME view lists exactly the
# granules in want-view (written by the caller).
check_view ()
{
  nbdinfo --map --json "$(nbd_uri sock "dirty-bitmap:$1")" > map.json
  python3 -c '
import json, sys
gran = int(sys.argv[1])
m = json.load(open("map.json"))
got = set()
for e in m:
    if not e["type"] & 1:       # data or zero: dirty (a hole is clean)
        got.update(range(e["offset"] // gran, (e["offset"] + e["length"] - 1) // gran + 1))
want = set(int(x) for x in open("want-view").read().split())
assert got == want, (sorted(got ^ want)[:10])
print("view ok:", len(got), "dirty granules")
' "$VIEW_GRAN"
}

@test "dirty-bitmap differential: file plugin, 4 bitmaps, restarts, disable, clear" {
  PLUGIN=(file disk.raw)
  truncate -s 24M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=24M --bitmap=b4k -g 4K
  "$QAD_IMG" bitmap disk.qdb --add b64k -g 64K
  "$QAD_IMG" bitmap disk.qdb --add b16k -g 16K --add b512 -g 512

  round r1 1
  expect_bitmap b4k 4096 r1-*.log
  expect_bitmap b64k 65536 r1-*.log
  expect_bitmap b16k 16384 r1-*.log
  expect_bitmap b512 512 r1-*.log

  # b16k is frozen from now on.
  "$QAD_IMG" bitmap disk.qdb --disable b16k
  round r2 2
  expect_bitmap b4k 4096 r1-*.log r2-*.log
  expect_bitmap b64k 65536 r1-*.log r2-*.log
  expect_bitmap b16k 16384 r1-*.log

  # Clearing b4k starts a new period for it only.
  "$QAD_IMG" bitmap disk.qdb --clear b4k
  round r3 3
  expect_bitmap b4k 4096 r3-*.log
  expect_bitmap b64k 65536 r1-*.log r2-*.log r3-*.log
  expect_bitmap b16k 16384 r1-*.log
  expect_bitmap b512 512 r1-*.log r2-*.log r3-*.log
  "$QAD_IMG" check disk.qdb
}

@test "dirty-bitmap differential: live view equals the persisted bitmap" {
  PLUGIN=(file disk.raw)
  truncate -s 16M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=16M --bitmap=v -g 32K
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  W run "$(nbd_uri sock)" 77 200 v.log
  W expect 32768 v.log > want-view
  VIEW_GRAN=32768
  check_view v
  stop_nbdkit sock
  expect_bitmap v 32768 v.log
}

@test "dirty-bitmap differential: memory plugin (no restart), unaligned size" {
  PLUGIN=(memory 12345678)
  "$QAD_IMG" create --format=qdb disk.qdb --size=12345678 --bitmap=m -g 64K
  round m1 5
  expect_bitmap m 65536 m1-*.log
}
