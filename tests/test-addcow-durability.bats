#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Durability rules of the add-cow filter (docs/specs/add-cow.txt,
# "Durability"), one regression test per data-loss bug found:
#  - a FUA write is durable with its bit, even when a non-FUA write set
#    that bit a moment before;
#  - over a plugin without multi-conn, a write and flush on one
#    connection into a cluster another connection copied up survive;
#  - a plugin that cannot flush gets neither flush nor FUA offered;
#  - after a failed flush or FUA write, every later write and flush
#    fails until restart;
#  - an image is never its own backing file, whatever the name.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

# read_at SOCK OFFSET COUNT: hex of what the export reads there.
read_at ()
{
  nbdsh_on "$1" "print(h.pread($3, $2).hex())"
}

hex_of ()
{
  python3 -c 'import sys; print(sys.argv[1] * int(sys.argv[2]))' "$1" "$2"
}

@test "addcow durability: a FUA write into a cluster a plain write just copied up survives kill -9" {
  random_file base.img $((1024 * 1024)) 81
  truncate -s 1M disk.raw
  start_addcow s addcow-backing=base.img
  pid="$(server_pid s)"
  nbdsh_on s '
import os
h.pwrite(b"\x11" * 512, 0)                       # copy-up, bit in memory
h.pwrite(b"\x22" * 512, 4096, nbd.CMD_FLAG_FUA)  # same cluster, FUA
os.kill('"$pid"', 9)
'
  sleep 0.3
  start_addcow s
  [ "$(read_at s 4096 512)" = "$(hex_of 22 512)" ]
}

@test "addcow durability: without multi-conn, a write and flush on B into a cluster A copied up survive kill -9" {
  requires_filter multi-conn
  random_file base.img $((1024 * 1024)) 82
  truncate -s 1M disk.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" --filter=multi-conn file disk.raw \
    multi-conn-mode=disable addcow=disk.add-cow addcow-backing=base.img
  pid="$(server_pid s)"
  nbdsh_on s '
import os
assert not h.can_multi_conn()
h.pwrite(b"\x33" * 512, 2 * 65536)               # A: copy-up of cluster 2
h2 = nbd.NBD()
h2.connect_uri(h.get_uri())
h2.pwrite(b"\x44" * 512, 2 * 65536 + 4096)       # B: fast path into it
h2.flush()
os.kill('"$pid"', 9)
'
  sleep 0.3
  start_addcow s
  [ "$(read_at s $((2 * 65536 + 4096)) 512)" = "$(hex_of 44 512)" ]
  # The rest of the cluster is A's write or the backing file's bytes,
  # never anything else.
  nbdsh_on s '
base = open("base.img", "rb").read()
c = h.pread(65536, 2 * 65536)
assert c[:512] in (b"\x33" * 512, base[2 * 65536:2 * 65536 + 512])
assert c[1024:4096] == base[2 * 65536 + 1024:2 * 65536 + 4096]
assert c[4608:] == base[2 * 65536 + 4608:3 * 65536]
'
}

# The filter over an eval plugin whose flush fails while the file
# "fail-flush" exists.  CAN_FLUSH is the can_flush script.
start_eval_addcow ()
{
  local can_flush="$1"; shift
  start_addcow_eval s \
    "if test -f $PWD/fail-flush; then echo EIO injected >&2; exit 1; fi" \
    can_flush="$can_flush" can_multi_conn='exit 0' "$@"
}

@test "addcow durability: a plugin that cannot flush gets neither flush nor FUA, bits are written at a clean close" {
  requires nbdkit eval --version
  random_file base.img $((1024 * 1024)) 83
  truncate -s 1M disk.raw
  start_eval_addcow 'exit 3' addcow-backing=base.img
  nbdsh_on s '
assert not h.can_flush()
assert not h.can_fua()
h.pwrite(b"a" * 10, 3 * 65536 + 1)
'
  # The connection closed cleanly: its bit is in the sidecar.
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 08 ]
  # A kill before any clean close leaves the bit out: that cluster reads
  # from the backing file again, which is what was promised (nothing).
  pid="$(server_pid s)"
  nbdsh_on s '
import os
h.pwrite(b"b" * 10, 5 * 65536 + 1)
os.kill('"$pid"', 9)
'
  sleep 0.3
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 08 ]
}

@test "addcow durability: after a failed plugin flush, every later write and flush fails until restart" {
  requires nbdkit eval --version
  random_file base.img $((1024 * 1024)) 84
  truncate -s 1M disk.raw
  start_eval_addcow 'exit 0' addcow-backing=base.img
  touch fail-flush
  nbdsh_on s '
h.pwrite(b"a" * 10, 3 * 65536 + 1)
try:
    h.flush()
    assert False, "the injected flush error was not reported"
except nbd.Error as e:
    assert e.errno == "EIO", e.errno
'
  rm fail-flush
  # The plugin would succeed now, but what it lost is unknown.
  nbdsh_on s '
for op in (lambda: h.flush(),
           lambda: h.pwrite(b"b" * 10, 3 * 65536 + 1),
           lambda: h.pwrite(b"c" * 10, 7 * 65536, nbd.CMD_FLAG_FUA),
           lambda: h.zero(4096, 8 * 65536),
           lambda: h.trim(65536, 3 * 65536)):
    try:
        op()
        assert False, "accepted after a failed flush"
    except nbd.Error as e:
        assert e.errno == "EIO", e.errno
assert h.pread(10, 3 * 65536 + 1) == b"a" * 10      # reads still work
'
  [ "$(grep -c 'refusing every further write and flush with EIO until restart' s.log)" -eq 1 ]
  stop_nbdkit s
  start_eval_addcow 'exit 0'
  nbdsh_on s 'h.pwrite(b"d" * 10, 9 * 65536); h.flush()'
}

@test "addcow durability: a failed FUA write poisons the filter too" {
  requires nbdkit eval --version
  random_file base.img $((1024 * 1024)) 85
  truncate -s 1M disk.raw
  start_eval_addcow 'exit 0' addcow-backing=base.img
  # Allocate cluster 3 durably, then fail the FUA of a write into it.
  nbdsh_on s 'h.pwrite(b"a" * 10, 3 * 65536 + 1); h.flush()'
  touch fail-flush
  nbdsh_on s '
try:
    h.pwrite(b"b" * 10, 3 * 65536 + 1, nbd.CMD_FLAG_FUA)
    assert False, "the FUA failure was not reported"
except nbd.Error as e:
    assert e.errno == "EIO", e.errno
'
  rm fail-flush
  nbdsh_on s '
try:
    h.flush()
    assert False, "flush acknowledged after a failed FUA write"
except nbd.Error as e:
    assert e.errno == "EIO", e.errno
'
}

@test "addcow identity: an image is never its own backing file, whatever its name" {
  truncate -s 1M disk.raw
  ln -s disk.raw link.raw
  ln disk.raw hard.raw
  for b in ./disk.raw link.raw hard.raw "$PWD/disk.raw"; do
    run nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
      addcow=disk.add-cow addcow-backing="$b" --run true
    [ "$status" -ne 0 ]
    [[ "$output" == *"its own backing file"* ]]
    [ ! -e disk.add-cow ]
  done
  # qad-img refuses to make such a sidecar too.
  run "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=hard.raw --backing-format=raw
  [ "$status" -ne 0 ]
  [[ "$output" == *"hard.raw: backing chain loop: this backing file is the image"* ]]
  [ ! -e disk.add-cow ]
  # A sidecar (made by hand or by a hostile party) that names the image
  # as its backing file is refused when opened: make one naming
  # base.raw, then rename base.raw's entry to hard.raw (same length).
  truncate -s 1M base.raw
  "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=base.raw --backing-format=raw
  sed -i 's/base\.raw/hard.raw/' disk.add-cow
  grep -q hard.raw disk.add-cow
  run nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow --run 'nbdinfo --size "$uri"'
  [ "$status" -ne 0 ]
  [[ "$output" == *"this backing file is the image"* ]]
}

@test "addcow identity: a QED backing whose own backing is the image is refused" {
  requires qemu-img --version
  truncate -s 1M disk.raw
  qemu-img create -q -f qed -b "$PWD/disk.raw" -F raw mid.qed 1M
  run nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow addcow-backing=mid.qed addcow-backing-format=qed \
    --run 'nbdinfo --size "$uri"'
  [ "$status" -ne 0 ]
  [[ "$output" == *"disk.raw: backing chain loop: this backing file is the image"* ]]
}
