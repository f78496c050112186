#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Basic behaviour of the add-cow filter: creating the sidecar, reading
# through to the backing file, copy-up on write, restart, extents,
# capabilities, and a raw image larger than the backing file.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 1
  truncate -s 2M disk.raw
  reference_of base.img 2M ref.raw
}

@test "addcow: creates the sidecar with the spec's header" {
  start_addcow s addcow-backing=base.img
  nbdinfo --size "$(nbd_uri s)"
  # Header fields (docs/specs/add-cow.txt section 4).
  [ "$(head -c 4 disk.add-cow)" = ACOW ]
  [ "$(peek disk.add-cow 4 I)" = 76 ]       # backing name offset
  [ "$(peek disk.add-cow 8 I)" = 8 ]        # "base.img"
  [ "$(peek disk.add-cow 12 I)" = 84 ]      # image name offset
  [ "$(peek disk.add-cow 16 I)" = 8 ]       # "disk.raw"
  [ "$(peek disk.add-cow 20 I)" = 16 ]      # cluster_bits
  [ "$(peek disk.add-cow 24 Q)" = 0 ]
  [ "$(peek disk.add-cow 40 I)" = 65536 ]   # HEADER_SIZE
  [ "$(dd if=disk.add-cow bs=1 skip=44 count=3 status=none)" = raw ]
  [ "$(dd if=disk.add-cow bs=1 skip=60 count=3 status=none)" = raw ]
  [ "$(dd if=disk.add-cow bs=1 skip=76 count=16 status=none)" = base.imgdisk.raw ]
  # Bitmap sized at first connection: 32 clusters -> one cluster of bitmap.
  [ "$(stat -c %s disk.add-cow)" = $((65536 * 2)) ]
}

@test "addcow: reads come from the backing file, zeroes past its end" {
  start_addcow s addcow-backing=base.img
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  # The raw image was not touched by reads.
  cmp disk.raw <(head -c 2M /dev/zero)
}

@test "addcow: unaligned write copies up the cluster, then sets its bit" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.pwrite(b"hello", 65536 * 3 + 1000); h.flush()'
  printf hello | dd of=ref.raw bs=1 seek=$((65536 * 3 + 1000)) conv=notrunc status=none
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  # The whole cluster 3 is in the raw image (copied up from backing).
  cmp <(dd if=disk.raw bs=64K skip=3 count=1 status=none) \
      <(dd if=ref.raw bs=64K skip=3 count=1 status=none)
  # Bit 3 of byte 0 of the bitmap, and nothing else.
  [ "$(od -A n -t x1 -j 65536 -N 2 disk.add-cow | tr -d ' ')" = 0800 ]
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow: data survives a restart" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.pwrite(b"A" * 100000, 12345)'
  stop_nbdkit s
  python3 -c 'import sys
f = open("ref.raw", "r+b"); f.seek(12345); f.write(b"A" * 100000)'
  # Restart without repeating the backing: the sidecar records it.
  start_addcow s2
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s2)" ref.raw
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow: extents: bit-1 from the plugin, bit-0 from the backing" {
  # Backing: data in the first 256K, a hole after (sparse file).
  truncate -s 1M sparse.img
  random_file d 262144 2
  dd if=d of=sparse.img conv=notrunc status=none
  start_addcow s addcow-backing=sparse.img
  nbdsh_on s 'h.pwrite(b"x" * 65536, 524288)'
  run nbdinfo --map "$(nbd_uri s)"
  echo "$output"
  # data 0-256K (backing), hole 256K-512K (backing hole), data 512K-576K
  # (written), hole to 2M (backing hole, then past the backing's end).
  [[ "${lines[0]}" =~ ^\ +0\ +262144\ +0\ +data ]]
  [[ "${lines[1]}" =~ ^\ +262144\ +262144\ +3\ +hole,zero ]]
  [[ "${lines[2]}" =~ ^\ +524288\ +65536\ +0\ +data ]]
  [[ "${lines[3]}" =~ ^\ +589824\ +1507328\ +3\ +hole,zero ]]
}

@test "addcow: every capability is explicit (writable, zero, fast zero, flush, fua, trim, extents)" {
  start_addcow s addcow-backing=base.img
  run nbdinfo --json "$(nbd_uri s)"
  echo "$output"
  [[ "$output" =~ \"is_read_only\":\ false ]]
  [[ "$output" =~ \"can_zero\":\ true ]]
  [[ "$output" =~ \"can_fast_zero\":\ true ]]
  [[ "$output" =~ \"can_flush\":\ true ]]
  [[ "$output" =~ \"can_fua\":\ true ]]
  [[ "$output" =~ \"can_trim\":\ true ]]
  [[ "$output" =~ \"can_multi_conn\":\ true ]]
  [[ "$output" =~ base:allocation ]]
  # The cluster size is the preferred block size.
  [[ "$output" =~ \"block_size_preferred\":\ 65536 ]]
}

@test "addcow: no backing file: unwritten clusters read as zeroes" {
  random_file disk.raw $((2 * 1024 * 1024)) 9   # garbage in the image
  start_addcow s
  nbdsh_on s 'assert h.pread(65536, 0) == bytes(65536)
h.pwrite(b"y" * 10, 70000)
assert h.pread(65536, 65536) == bytes(70000 - 65536) + b"y" * 10 + bytes(131072 - 70010)'
  run nbdinfo --map "$(nbd_uri s)"
  [[ "${lines[0]}" =~ ^\ +0\ +65536\ +3\ +hole,zero ]]
  [[ "${lines[1]}" =~ ^\ +65536\ +65536\ +0\ +data ]]
}

@test "addcow: image larger than the backing reads zeroes past the backing's end" {
  truncate -s 64M disk.raw
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
import hashlib
base = open("base.img", "rb").read()
assert h.pread(len(base), 0) == base
assert h.pread(1 << 20, 1 << 20) == bytes(1 << 20)
assert h.pread(4096, (64 << 20) - 4096) == bytes(4096)
# A write straddling the backing end copies up backing + zeroes.
h.pwrite(b"z", (1 << 20) + 5)
c = h.pread(65536, 1 << 20)
assert c == bytes(5) + b"z" + bytes(65536 - 6)
'
}

@test "addcow: cluster size parameter, and a disk that is not a multiple of it" {
  truncate -s $((1024 * 1024 + 1536)) disk.raw
  reference_of base.img $((1024 * 1024 + 1536)) ref.raw
  start_addcow s addcow-backing=base.img addcow-cluster-size=4K
  [ "$(peek disk.add-cow 20 I)" = 12 ]
  [ "$(peek disk.add-cow 40 I)" = 4096 ]
  nbdsh_on s 'h.pwrite(b"t" * 100, 1024 * 1024 + 1000); h.flush()'
  python3 -c 'f = open("ref.raw", "r+b"); f.seek(1024 * 1024 + 1000); f.write(b"t" * 100)'
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow: writing every cluster sets ALL_ALLOCATED; the image then serves alone" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.pwrite(b"q" * (1 << 20), 0)
h.zero(1 << 20, 1 << 20)
h.flush()'
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  stop_nbdkit s
  rm base.img
  start_addcow s2
  nbdsh_on s2 'assert h.pread(1 << 20, 0) == b"q" * (1 << 20)
assert h.pread(1 << 20, 1 << 20) == bytes(1 << 20)'
  # And the raw image is the disk by itself.
  cmp <(head -c 1M disk.raw) <(python3 -c 'import sys; sys.stdout.buffer.write(b"q" * (1 << 20))')
}

@test "addcow: qemu-img sees accurate extents and keeps the disk sparse" {
  requires qemu-img --version
  truncate -s 64M sparse.img
  dd if=base.img of=sparse.img conv=notrunc status=none        # 1M data
  truncate -s 64M disk.raw
  start_addcow s addcow-backing=sparse.img
  nbdsh_on s 'h.pwrite(b"w" * 65536, 32 << 20)'
  run map_of "$(nbd_uri s)" raw
  echo "$output"
  [ "${lines[0]}" = "0 1048576 data -" ]
  [ "${lines[1]}" = "1048576 32505856 - zero" ]
  [ "${lines[2]}" = "33554432 65536 data -" ]
  [ "${lines[3]}" = "33619968 33488896 - zero" ]
  qemu-img convert -f raw -O qcow2 "$(nbd_uri s)" out.qcow2
  run map_of out.qcow2 qcow2
  echo "$output"
  [ "${lines[0]}" = "0 1048576 data -" ]
  [ "${lines[2]}" = "33554432 65536 data -" ]
  [ "$(qemu-img info --output=json out.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["actual-size"] < 8 << 20)')" = True ]
}
