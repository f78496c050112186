#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Races on bit-0 clusters, made deterministic by a slow backing file
# (an NBD backing behind nbdkit's delay filter, so every copy-up read
# takes 50 ms): concurrent unaligned writes to disjoint parts of the
# same cluster must all survive, with each other and with
# copy-on-read of that cluster.  (Without the cluster range lock the
# second copy-up overwrites the first write with backing data.)

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_nbdsh
  requires_filter delay
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 81
  truncate -s 1M disk.raw
  start_nbdkit b -r --filter=delay file base.img delay-read=50ms
}

# The pieces: for clusters 2..5, eight 500-byte writes at k*1024+100.
PIECES='
pieces = [(c * 65536 + k * 1024 + 100, bytes([65 + k + c]) * 500)
          for c in range(2, 6) for k in range(8)]
'

@test "addcow race: concurrent unaligned writes to the same bit-0 cluster" {
  start_addcow s addcow-backing="$(nbd_uri "$PWD/b")"
  nbdsh_on s "$PIECES"'
for off, data in pieces:
    h.aio_pwrite(data, off)
while h.aio_in_flight() > 0:
    h.poll(-1)
want = bytearray(open("base.img", "rb").read())
for off, data in pieces:
    want[off:off + len(data)] = data
got = h.pread(1 << 20, 0)
bad = [off for off, data in pieces if got[off:off + len(data)] != data]
assert not bad, "lost writes at %s" % bad
assert got == bytes(want)
'
}

@test "addcow race: copy-on-read racing unaligned writes to the same cluster" {
  start_addcow s addcow-backing="$(nbd_uri "$PWD/b")" addcow-on-read=true
  nbdsh_on s "$PIECES"'
base = open("base.img", "rb").read()
reads = []
for i, (off, data) in enumerate(pieces):
    if i % 2 == 0:
        # A read of the whole cluster, in flight with the writes.
        c = off & ~65535
        buf = nbd.Buffer(65536)
        reads.append((c, buf, h.aio_pread(buf, c)))
    h.aio_pwrite(data, off)
while h.aio_in_flight() > 0:
    h.poll(-1)
want = bytearray(base)
for off, data in pieces:
    want[off:off + len(data)] = data
got = h.pread(1 << 20, 0)
bad = [off for off, data in pieces if got[off:off + len(data)] != data]
assert not bad, "lost writes at %s" % bad
assert got == bytes(want)
open("ref.raw", "wb").write(want)
'
  stop_nbdkit s
  # The final full read copied everything: the raw image is the disk.
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}
