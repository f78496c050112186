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

@test "addcow crash: kill -9 during copy-ups from a slow NBD backing" {
  requires_filter delay
  random_file base.img $((4 * 1024 * 1024)) 64
  random_file disk.raw $((4 * 1024 * 1024)) 65
  reference_of base.img 4M flushed.ref
  start_nbdkit b -r --filter=delay file base.img delay-read=5ms
  crash_rounds 4 addcow-backing="$(nbd_uri "$PWD/b")"
}

@test "addcow crash: a flush during a copy-up never persists the bit before the data" {
  requires_nbdsh
  requires_filter delay
  random_file base.img $((1024 * 1024)) 66
  truncate -s 1M disk.raw
  # Each backing read takes 4 s: the copy-up below is still waiting for
  # it when the flush completes and the server is killed.
  start_nbdkit b -r --filter=delay file base.img delay-read=4
  start_addcow s addcow-backing="$(nbd_uri "$PWD/b")"
  pid="$(server_pid s)"
  nbdsh_on s '
import os, time
h.aio_pwrite(b"x" * 10, 2 * 65536 + 5)     # copy-up of cluster 2
time.sleep(0.5)
h2 = nbd.NBD()
h2.connect_uri(h.get_uri())
h2.flush()                                  # persists whatever bits are set
os.kill('"$pid"', 9)
'
  sleep 0.5
  ! kill -0 "$pid" 2>/dev/null
  # Bit 2 must not be on disk: its data was never written.
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 00 ]
  start_addcow s
  nbdsh_on s 'assert h.pread(65536, 2 * 65536) == open("base.img", "rb").read()[2 * 65536:3 * 65536]'
}

@test "addcow flush order: the plugin is flushed before the bitmap is written" {
  requires_nbdsh
  requires nbdkit eval --version
  random_file base.img $((1024 * 1024)) 67
  truncate -s 1M disk.raw
  # A multi-conn plugin whose flush takes a copy of the sidecar: at that
  # moment the new bit must not be in the file yet.
  start_addcow_eval s "cp $PWD/disk.add-cow $PWD/at-flush.add-cow" \
    can_flush='exit 0' can_multi_conn='exit 0' addcow-backing=base.img
  nbdsh_on s 'assert h.can_multi_conn()
h.pwrite(b"o" * 100, 3 * 65536 + 7)
h.flush()'
  [ "$(od -A n -t x1 -j 65536 -N 1 at-flush.add-cow | tr -d ' ')" = 00 ]
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 08 ]
  # And FUA goes the same way.
  nbdsh_on s 'h.pwrite(b"p" * 100, 5 * 65536 + 7, nbd.CMD_FLAG_FUA)'
  [ "$(od -A n -t x1 -j 65536 -N 1 at-flush.add-cow | tr -d ' ')" = 08 ]
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 28 ]
}

@test "addcow without multi-conn: a bit is durable, after its data, before the write returns" {
  requires_nbdsh
  requires nbdkit eval --version
  random_file base.img $((1024 * 1024)) 68
  truncate -s 1M disk.raw
  # The eval plugin does not offer multi-conn, so one connection's flush
  # need not cover another's writes: each copy-up is made durable (data
  # first, then its bit) before it is acknowledged.  The plugin's flush
  # logs the sidecar's bitmap byte each time it runs.
  start_addcow_eval s "od -A n -t x1 -j 65536 -N 1 $PWD/disk.add-cow >> $PWD/flushes" \
    can_flush='exit 0' addcow-backing=base.img
  nbdsh_on s '
assert not h.can_multi_conn()
h.pwrite(b"a" * 10, 3 * 65536 + 1)           # bit 3, through connection 1
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x08", "bit 3 not durable when the write returned"
h2 = nbd.NBD()
h2.connect_uri(h.get_uri())
h2.pwrite(b"b" * 10, 5 * 65536 + 1)          # bit 5, through connection 2
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x28"
'
  # The data was flushed before each bit reached the sidecar.
  [ "$(tr -d ' ' < flushes | head -2 | tr '\n' ,)" = "00,08," ]
}

@test "addcow multi-conn: with a multi-conn plugin, a flush on any connection persists every bit" {
  requires_nbdsh
  random_file base.img $((1024 * 1024)) 69
  truncate -s 1M disk.raw
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
assert h.can_multi_conn()
h.pwrite(b"a" * 10, 3 * 65536 + 1)
h2 = nbd.NBD()
h2.connect_uri(h.get_uri())
h2.flush()
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x08"
'
}

@test "addcow crash: kill -9 with a plugin without multi-conn (per-connection persistence)" {
  requires_filter multi-conn
  random_file base.img $((4 * 1024 * 1024)) 70
  random_file disk.raw $((4 * 1024 * 1024)) 71
  reference_of base.img 4M flushed.ref
  local i
  for i in 1 2 3; do
    start_nbdkit s --filter="$ADDCOW_FILTER" --filter=multi-conn file disk.raw \
      multi-conn-mode=disable addcow=disk.add-cow addcow-backing=base.img
    "$ADDCOW_WORKLOAD" crash "$(nbd_uri s)" . "$i" > crash.out &
    local client=$!
    sleep "0.$((3 + RANDOM % 6))"
    stop_nbdkit s KILL
    wait "$client"
    start_addcow s
    "$ADDCOW_WORKLOAD" crash-verify "$(nbd_uri s)" .
    stop_nbdkit s
  done
}
