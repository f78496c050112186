#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Zero and trim semantics.  Zeroing a bit-0 cluster writes real
# zeroes into the raw image (so it stays a valid raw image, seed 002),
# unaligned zero heads and tails keep the rest of the cluster from the
# backing (the cow filter's old bug), trim never exposes stale image
# bytes for bit-0 clusters, and FAST_ZERO fails fast when a copy-up
# would be needed.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 21
  random_file disk.raw $((1024 * 1024)) 22   # stale bytes in the image
}

@test "addcow zero: bit-0 clusters get real zeroes in the image" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.zero(3 * 65536, 65536)
h.flush()'
  cmp <(dd if=disk.raw bs=64K skip=1 count=3 status=none) \
      <(head -c $((3 * 65536)) /dev/zero)
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 0e ]
}

@test "addcow zero: unaligned head and tail keep the backing's bytes" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
base = open("base.img", "rb").read()
h.zero(65536 + 100, 1000)            # inside cluster 0 and 1
want = bytearray(base)
want[1000:1000 + 65636] = bytes(65636)
assert h.pread(1 << 20, 0) == bytes(want)
h.zero(700, 200000, nbd.CMD_FLAG_NO_HOLE)   # head and tail partial
want[200000:200700] = bytes(700)
assert h.pread(1 << 20, 0) == bytes(want)
h.flush()
'
  stop_nbdkit s
  start_addcow s
  nbdsh_on s '
base = open("base.img", "rb").read()
want = bytearray(base)
want[1000:1000 + 65636] = bytes(65636)
want[200000:200700] = bytes(700)
assert h.pread(1 << 20, 0) == bytes(want)
'
}

@test "addcow trim: bit-0 clusters keep reading the backing file" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
base = open("base.img", "rb").read()
h.trim(1 << 20, 0)
assert h.pread(1 << 20, 0) == base
'
  # Nothing was copied up by the trim.
  [ "$(od -A n -t x1 -j 65536 -N 2 disk.add-cow | tr -d ' ')" = 0000 ]
}

@test "addcow trim: bit-1 clusters are trimmed in the image, reads stay stable" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
h.pwrite(b"w" * 65536, 65536)
h.trim(65536, 65536)
a = h.pread(65536, 65536)
b = h.pread(65536, 65536)
assert a == b
assert h.pread(65536, 0) == open("base.img", "rb").read()[:65536]
'
}

@test "addcow fast zero: refused (ENOTSUP) when a copy-up is needed, allowed otherwise" {
  start_addcow s addcow-backing=base.img
  nbdsh_on s '
import errno
try:
    h.zero(100, 65536 + 10, nbd.CMD_FLAG_FAST_ZERO)
    assert False, "fast zero with copy-up succeeded"
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
base = open("base.img", "rb").read()
assert h.pread(1 << 20, 0) == base      # the refused zero changed nothing
# Whole bit-0 clusters need no copy-up: the fast zero goes to the
# plugin, which may itself refuse it (fallocate support varies).
try:
    h.zero(2 * 65536, 2 * 65536, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(2 * 65536, 2 * 65536) == bytes(2 * 65536)
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
    assert h.pread(2 * 65536, 2 * 65536) == base[2 * 65536:4 * 65536]
'
}

@test "addcow fua: a FUA write is persisted with its bit before the reply" {
  start_addcow s addcow-backing=base.img
  # No flush was sent, but the bitmap on disk already has bit 5
  # while the connection is still open.
  nbdsh_on s '
h.pwrite(b"f" * 10, 5 * 65536 + 3, nbd.CMD_FLAG_FUA)
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x20"
h.pwrite(b"g" * 10, 6 * 65536 + 3)
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x20"     # not yet: no flush, no FUA
h.flush()
with open("disk.add-cow", "rb") as f:
    f.seek(65536)
    assert f.read(1) == b"\x60"
'
}
