#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Lazy tracking (dirty-bitmap-tracking=lazy): only the coarse region
# map is synced before writes.  After a kill -9 the bitmap read back
# (by the independent reader, which ORs the region map in as the spec
# says) must cover every granule that changed; after a clean shutdown
# the file is a plain version 1 file with the exact bitmap.  Prints the
# precision lost after a crash for a random and a sequential workload.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

W () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" "$@"; }

serve_lazy ()
{
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b dirty-bitmap-granularity=4K \
    dirty-bitmap-tracking=lazy dirty-bitmap-region-size=1M "$@"
}

dirty_count ()
{
  python3 "$BATS_TEST_DIRNAME/dirty-bitmap-qdbread.py" disk.qdb |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["b"]["dirty"]))'
}

@test "dirty-bitmap lazy: kill -9 during random workloads, superset after the region map" {
  head -c 32M /dev/urandom > disk.raw
  for run in 1 2 3 4 5; do
    rm -f disk.qdb
    cp disk.raw before.raw
    serve_lazy dirty-bitmap-checkpoint-interval=1
    pids=()
    for i in 0 1 2; do
      W run "$(nbd_uri sock)" "$((run * 10 + i))" 100000 "w-$run-$i.log" \
        40000 >/dev/null 2>&1 &
      pids+=($!)
    done
    sleep "1.$(( RANDOM % 10 ))"
    "$QAD_IMG" info disk.qdb | grep -q 'incompatible 0x1'
    stop_nbdkit sock KILL
    for i in "${pids[@]}"; do wait "$i" || true; done
    "$QAD_IMG" check disk.qdb >/dev/null
    # The independent reader with the region map ORed in.
    W changed 4096 before.raw disk.raw > changed
    W compare disk.qdb b changed subset
    # qad-img (common/qdb) applies the map the same way.
    n=$("$QAD_IMG" info --json disk.qdb |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["bitmaps"][0]["dirty-granules"])')
    [ "$n" -eq "$(dirty_count)" ]
  done
}

@test "dirty-bitmap lazy: clean shutdown leaves a version 1 file with the exact bitmap" {
  truncate -s 16M disk.raw
  serve_lazy
  W run "$(nbd_uri sock)" 7 300 a.log 20000 wwwz
  stop_nbdkit sock
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"incompatible 0x0"* ]]
  W expect 4096 a.log > want
  W compare disk.qdb b want
  "$QAD_IMG" check disk.qdb
  # A restart after a crash, in strict mode, applies and drops the map.
  serve_lazy dirty-bitmap-checkpoint-interval=3600
  W run "$(nbd_uri sock)" 8 50 b.log 4096 w
  stop_nbdkit sock KILL
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  stop_nbdkit sock
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"incompatible 0x0"* ]]
  W expect 4096 a.log b.log > want2
  W compare disk.qdb b want2 subset
}

@test "dirty-bitmap lazy: precision lost by a crash, random versus sequential" {
  truncate -s 64M disk.raw
  for kind in random sequential; do
    rm -f disk.qdb
    serve_lazy dirty-bitmap-checkpoint-interval=3600
    if [ "$kind" = random ]; then
      nbdsh -u "$(nbd_uri sock)" -c '
import random
r = random.Random(1)
for i in range(256):
    h.pwrite(b"r" * 4096, r.randrange(0, 64 << 20, 4096))
'
    else
      nbdsh -u "$(nbd_uri sock)" -c '
for i in range(256):
    h.pwrite(b"s" * 4096, (8 << 20) + i * 4096)
'
    fi
    stop_nbdkit sock KILL
    got=$(dirty_count)
    echo "# $kind: 256 4K writes, $got dirty 4K granules after kill -9 (1M regions, no checkpoint)" >&3
    [ "$got" -ge 256 ]
  done
}

@test "dirty-bitmap lazy: a bad region map is refused with a clear message" {
  "$QAD_IMG" create --format=qdb plain.qdb --size=16M
  # Bit 0 without the extension.
  cp plain.qdb nobit.qdb
  printf '\x01' | dd of=nobit.qdb bs=1 seek=39 conv=notrunc status=none
  expect_fail_cleanly 'bit 0 \(region map\) is set but the region map header extension is absent' \
    "$QAD_IMG" check nobit.qdb
  # A file left by a crash, then its region_size / offset corrupted.
  truncate -s 16M disk.raw
  serve_lazy dirty-bitmap-checkpoint-interval=3600
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"x" * 4096, 0)'
  stop_nbdkit sock KILL
  "$QAD_IMG" check disk.qdb
  ext=$(python3 -c '
import struct, sys
d = open("disk.qdb", "rb").read()
pos = 64
while True:
    t, l = struct.unpack(">II", d[pos:pos + 8])
    if t == 0x52474e4d or t == 0:
        break
    pos += 8 + (l + 7) // 8 * 8
print(pos)')
  cp disk.qdb badsize.qdb
  printf '\x00\x00\x00\x00\x00\x00\x03\x00' |
    dd of=badsize.qdb bs=1 seek=$((ext + 8)) conv=notrunc status=none
  expect_fail_cleanly 'region_size 768 is not a power of 2' \
    "$QAD_IMG" check badsize.qdb
  cp disk.qdb badoff.qdb
  printf '\x7f\x00\x00\x00\x00\x00\x00\x00' |
    dd of=badoff.qdb bs=1 seek=$((ext + 16)) conv=notrunc status=none
  expect_fail_cleanly 'region map: offset 9151314442816847872 size' \
    "$QAD_IMG" check badoff.qdb
  expect_fail_cleanly 'region map' \
    nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=badoff.qdb --run true
}

@test "dirty-bitmap lazy: kill -9 in the middle of --add/--disable commands under writers" {
  truncate -s 32M disk.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-granularity=4K \
    dirty-bitmap-tracking=lazy dirty-bitmap-region-size=1M \
    dirty-bitmap-checkpoint-interval=1 dirty-bitmap-control="$PWD/ctl"
  "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-live.py" atomic "$(nbd_uri sock)" \
    "$PWD/ctl" "$QAD_IMG" 1000 6 writes.log >/dev/null 2>&1 &
  pid=$!
  sleep 2
  stop_nbdkit sock KILL
  wait "$pid" || true
  n=$(wc -l < writes.log)
  echo "# $n writes logged before the kill" >&3
  [ "$n" -gt 0 ]
  "$QAD_IMG" check disk.qdb
  run "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-live.py" covered disk.qdb 4096 writes.log
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "dirty-bitmap lazy: an NBD flush brings a checkpoint (precision kept)" {
  truncate -s 64M disk.raw
  serve_lazy dirty-bitmap-checkpoint-interval=3600
  nbdsh -u "$(nbd_uri sock)" -c '
for i in range(32):
    h.pwrite(b"f" * 4096, i * (2 << 20))
h.flush()
'
  # The checkpoint runs in the background, soon after the flush.
  for i in $(seq 1 50); do
    test "$(dirty_count)" -eq 32 && break
    sleep 0.1
  done
  stop_nbdkit sock KILL
  [ "$(dirty_count)" -eq 32 ]
}
