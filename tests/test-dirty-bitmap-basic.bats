#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter: creation, views, exports, locking, parameters.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
  truncate -s 8M disk.raw
}

qdbread () { python3 "$BATS_TEST_DIRNAME/dirty-bitmap-qdbread.py" "$@"; }

teardown ()
{
  # The persist-failure test makes disk.qdb immutable for a while.
  chattr -i "$BATS_TEST_TMPDIR/disk.qdb" 2>/dev/null || true
  cleanup_servers
}

@test "dirty-bitmap: creates the QDB file with the named bitmaps" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-name=b2 \
    dirty-bitmap-granularity=4K
  run "$QAD_IMG" info disk.qdb --json
  [ "$status" -eq 0 ]
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
assert j["format"] == "qdb"
assert [b["name"] for b in j["bitmaps"]] == ["b1", "b2"]
for b in j["bitmaps"]:
    assert b["enabled"] and b["granularity"] == 4096
    assert b["disk-size"] == 8 << 20 and b["dirty-bytes"] == 0
' "$output"
  # The independent reader agrees.
  qdbread disk.qdb | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert set(j) == {"b1", "b2"} and j["b1"]["dirty"] == []'
}

@test "dirty-bitmap: default bitmap name is bitmap0" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"bitmap0: enabled, granularity 65536"* ]]
}

@test "dirty-bitmap: list_exports shows the views, default export is the disk" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-name=b2
  run nbdinfo --list --json "$(nbd_uri sock)"
  [ "$status" -eq 0 ]
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
names = [e["export-name"] for e in j["exports"]]
assert "dirty-bitmap:b1" in names and "dirty-bitmap:b2" in names, names
' "$output"
  run nbdinfo --size "$(nbd_uri sock)"
  [ "$output" = 8388608 ]
  run nbdinfo --can write "$(nbd_uri sock)"
  [ "$status" -eq 0 ]
  run nbdinfo --can write "$(nbd_uri sock dirty-bitmap:b1)"
  [ "$status" -ne 0 ]
}

@test "dirty-bitmap: view extents are data for dirty granules, hole for clean; reads correct" {
  requires_nbdsh
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-granularity=64K
  nbdsh -u "$(nbd_uri sock)" -c '
h.pwrite(b"A" * 10, 70000)          # granule 1
h.zero(65536 * 2, 65536 * 4)        # granules 4, 5
h.trim(1, 8388607)                  # last granule (127)
'
  run nbdinfo --map --json "$(nbd_uri sock dirty-bitmap:b1)"
  [ "$status" -eq 0 ]
  python3 -c '
import json, sys
m = json.loads(sys.argv[1])
# Dirty is data or zero (type 2 where the plugin says the range reads
# as zeroes; test-dirty-bitmap-view-zero covers which); merged.
dirty = []
for e in m:
    if e["type"] in (0, 2):
        if dirty and sum(dirty[-1]) == e["offset"]:
            dirty[-1] = (dirty[-1][0], dirty[-1][1] + e["length"])
        else:
            dirty.append((e["offset"], e["length"]))
clean = [e for e in m if e["type"] not in (0, 2)]
assert dirty == [(65536, 65536), (262144, 131072), (8323072, 65536)], dirty
assert all(e["type"] == 1 for e in clean), clean   # HOLE without ZERO
assert sum(e["length"] for e in m) == 8 << 20
' "$output"
  # The view reads the same data as the disk.
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" -c '
assert h.pread(10, 70000) == b"A" * 10
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    assert False, "write to the view succeeded"
except nbd.Error:
    pass
'
}

@test "dirty-bitmap: unknown view name is refused" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  run nbdinfo "$(nbd_uri sock dirty-bitmap:nosuch)"
  [ "$status" -ne 0 ]
  grep -q 'no bitmap named "nosuch"' sock.log
}

@test "dirty-bitmap: a second server on the same QDB file is refused" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  expect_fail_cleanly "disk.qdb: QDB file is in use by another process" \
    nbdkit -U sock2 -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  # qad-img refuses to change it too.
  expect_fail_cleanly "disk.qdb: QDB file is in use by another process" \
    "$QAD_IMG" bitmap disk.qdb --clear bitmap0
  expect_fail_cleanly "disk.qdb: QDB file is in use by another process" \
    "$QAD_IMG" create --force --format=qdb disk.qdb --size=8M
  # After the server stops, the file can be used again.
  stop_nbdkit sock
  start_nbdkit sock2 --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
}

@test "dirty-bitmap: disk size must match the QDB file (which is left unchanged)" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=4M
  refused disk.qdb 'bitmap "bitmap0": disk_size 4194304 does not match the size of the disk being served \(8388608' \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
}

@test "dirty-bitmap: parameters are checked" {
  expect_fail_cleanly "dirty-bitmap=FILE.qdb parameter is required" \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw
  expect_fail_cleanly "must be a power of 2" \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-granularity=1000
  expect_fail_cleanly "character 0x3a is not allowed" \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=a:b
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=b1
  expect_fail_cleanly 'no bitmap named "b2"' \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b2
}

@test "dirty-bitmap: a bitmap with the IN_USE flag is refused" {
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=b1
  # Set IN_USE (flags are at byte 24 of the first directory entry, at
  # cluster 1 = 65536).
  python3 -c '
import sys
with open("disk.qdb", "r+b") as f:
    f.seek(65536 + 24); f.write(b"\x00\x03")'
  expect_fail_cleanly 'bitmap "b1" has the IN_USE flag' \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  "$QAD_IMG" bitmap disk.qdb --clear b1
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
}

@test "dirty-bitmap: concurrent first touches share fdatasyncs (group commit)" {
  requires_nbdsh
  truncate -s 64M disk.raw
  start_nbdkit sock -v --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-granularity=4K
  # 8 clients, each touching 300 fresh granules, 8 requests in flight
  # per client: up to 64 first touches wait for a commit at once.
  pids=()
  for i in 0 1 2 3 4 5 6 7; do
    nbdsh -u "$(nbd_uri sock)" -c "
for k0 in range(0, 300, 8):
    cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(b'x'),
                            ($i * 300 + k) * 8192)
               for k in range(k0, min(k0 + 8, 300))]
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        assert h.aio_command_completed(c)
" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  stop_nbdkit sock
  line="$(grep 'requests needed new bits' sock.log)"
  echo "# $line" >&3
  reqs=$(sed -E 's/.* ([0-9]+) requests needed.*/\1/' <<<"$line")
  commits=$(sed -E 's/.*, ([0-9]+) commits.*/\1/' <<<"$line")
  [ "$reqs" -eq 2400 ]
  [ "$commits" -ge 1 ]
  # Sharing: on average each fdatasync covers at least two first
  # touches (one sync per request would mean no group commit at all).
  if [ $((commits * 2)) -gt "$reqs" ]; then
    echo "no group commit: $commits syncs for $reqs requests" >&2
    false
  fi
  # Every write is in the persisted bitmap.
  qdbread disk.qdb | python3 -c '
import json, sys
d = set(json.load(sys.stdin)["bitmap0"]["dirty"])
assert d == set(k * 2 for k in range(2400)), len(d)'
  # Writing the same granules again after a restart costs no sync.
  start_nbdkit sock2 -v --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  nbdsh -u "$(nbd_uri sock2)" -c "
for k in range(2400):
    h.pwrite(b'y', k * 8192 + 1)
"
  stop_nbdkit sock2
  grep -q ' 0 requests needed new bits, 0 commits' sock2.log
}

@test "dirty-bitmap: the view of a disabled bitmap is frozen, an enabled one is live" {
  requires_nbdsh
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=live --bitmap=frozen
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  # Whole granules of data, so that each is one data extent (a dirty
  # range that reads as zeroes would be type 2).
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"1" * 65536, 0)'
  stop_nbdkit sock
  "$QAD_IMG" bitmap disk.qdb --disable frozen
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"2" * 65536, 5 << 20)'
  # live: granules 0 and 80; frozen: granule 0 only.
  run nbdinfo --map "$(nbd_uri sock dirty-bitmap:live)"
  [ "$(awk '$3 == 0 { print $1, $2 }' <<<"$output" | tr '\n' ' ')" = \
    "0 65536 5242880 65536 " ]
  run nbdinfo --map "$(nbd_uri sock dirty-bitmap:frozen)"
  [ "$(awk '$3 == 0 { print $1, $2 }' <<<"$output" | tr '\n' ' ')" = \
    "0 65536 " ]
  run nbdinfo --list "$(nbd_uri sock)"
  [[ "$output" == *"dirty bitmap frozen (disabled, granularity 65536)"* ]]
}

@test "dirty-bitmap: if the bitmap cannot be persisted, the write is not passed down" {
  requires_nbdsh
  requires which chattr
  # Needs root and a filesystem with the immutable flag (ext4, xfs).
  touch probe; chattr +i probe 2>/dev/null || skip "chattr +i not supported here"
  chattr -i probe
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"a", 0)'
  chattr +i disk.qdb
  run nbdsh -u "$(nbd_uri sock)" -c '
try:
    h.pwrite(b"b", 1 << 20)     # a clean granule: its bit cannot be saved
    print("unexpected success")
except nbd.Error as e:
    print("failed as expected:", e)
try:
    h.pwrite(b"c", 1)           # an already dirty granule: refused too
    print("unexpected success")
except nbd.Error as e:
    print("failed as expected:", e)
'
  chattr -i disk.qdb
  echo "$output"
  [[ "$output" != *"unexpected success"* ]]
  [ "$(echo "$output" | grep -c "failed as expected")" -eq 2 ]
  grep -q "refusing every further write" sock.log
  # Neither write reached the disk.
  [ "$(od -An -c -j $((1 << 20)) -N 1 disk.raw | tr -d ' ')" = '\0' ]
  [ "$(od -An -c -j 1 -N 1 disk.raw | tr -d ' ')" = '\0' ]
}
