#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# What the qed filter asks of the plugin below it, seen through
# nbdkit's log filter placed between them: contiguous clusters are one
# read; concurrent reads of one L2 table fetch it once; NBD_CMD_CACHE
# prefetches the L2 tables; writes are refused.

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh

setup ()
{
  requires_nbdsh
  requires_filter log
  requires_filter delay
  requires qemu-img --version
  requires_qed_filter
  cd "$BATS_TEST_TMPDIR"
}

# reads LOG [COUNT]: "offset count" of every read the plugin got
# (hex), or only those of COUNT bytes.
reads ()
{
  python3 - "$@" <<'PY'
import re, sys
want = int(sys.argv[2], 0) if len(sys.argv) > 2 else None
for line in open(sys.argv[1]):
    m = re.search(r" Read id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+) \.\.\.$", line)
    if m and (want is None or int(m.group(2), 16) == want):
        print(m.group(1), m.group(2))
PY
}

@test "qed filter requests: contiguous clusters are one read" {
  random_file src.raw $((4 * 1024 * 1024)) 3
  # A zero cluster in the middle of the second MiB.
  dd if=/dev/zero of=src.raw bs=64k seek=20 count=1 conv=notrunc 2>/dev/null
  qemu-img convert -f raw -O qed -o cluster_size=65536 src.raw disk.qed
  nbdkit -U - --filter="$QED_FILTER" --filter=log file disk.qed \
    logfile=log --run '
    nbdsh -u "$uri" -c "
assert h.pread(1048576, 0) == open(\"src.raw\", \"rb\").read(1048576)
assert h.pread(1048576, 1048576) == open(\"src.raw\", \"rb\").read()[1048576:2097152]
"'
  # Header, L1 (4 clusters), L2 (4 clusters), then the data: the first
  # MiB in one read, the second in two (the hole at cluster 20 splits
  # it, though clusters 19 and 21 are contiguous in the file).
  test "$(reads log | awk '{ print $2 }' | tr '\n' ' ')" = \
    "0x40 0x40000 0x40000 0x100000 0x40000 0xb0000 "
}

@test "qed filter requests: concurrent reads of one L2 table fetch it once" {
  random_file src.raw $((2 * 1024 * 1024)) 4
  qemu-img convert -f raw -O qed -o cluster_size=4096,table_size=4 \
    src.raw disk.qed
  l2="$(peek disk.qed "$(peek disk.qed 40 Q)" Q)"
  # Slow reads below (delay filter) so that the requests overlap.
  nbdkit -U - --threads=16 --filter="$QED_FILTER" --filter=log \
    --filter=delay file disk.qed logfile=log rdelay=200ms --run '
    nbdsh -u "$uri" -c "
import time
bufs = [nbd.Buffer(4096) for i in range(16)]
cookies = [h.aio_pread(bufs[i], i * 65536) for i in range(16)]
while h.aio_in_flight() > 0:
    h.poll(-1)
src = open(\"src.raw\", \"rb\").read()
for i in range(16):
    assert bufs[i].to_bytearray() == src[i * 65536:i * 65536 + 4096]
"'
  printf -v l2hex '0x%x' "$l2"
  test "$(reads log | awk -v o="$l2hex" '$1 == o' | wc -l)" -eq 1
}

@test "qed filter requests: NBD_CMD_CACHE prefetches the L2 tables" {
  truncate -s 32M src.raw
  for m in 0 8 16 24; do
    printf 'region %d' $m | dd of=src.raw bs=1M seek=$m conv=notrunc 2>/dev/null
  done
  qemu-img convert -f raw -O qed -o cluster_size=4096,table_size=4 \
    src.raw disk.qed
  nbdkit -U - --filter="$QED_FILTER" --filter=log file disk.qed \
    logfile=log --run '
    nbdsh -u "$uri" -c "
assert h.can_cache()
h.cache(32 * 1024 * 1024, 0)
for m in (0, 8, 16, 24):
    assert h.pread(9, m * 1048576).startswith(b\"region\")
"'
  # Four L2 tables of 16 KiB, each read once (by the cache request).
  test "$(reads log 0x4000 | wc -l)" -eq 5      # L1 + 4 x L2
}

@test "qed filter requests: writes are refused, the image is untouched" {
  qemu-img create -q -f qed disk.qed 1M
  before="$(md5sum < disk.qed)"
  nbdkit -U - --filter="$QED_FILTER" file disk.qed --run '
    nbdsh -u "$uri" -c "
assert h.is_read_only()
h.set_strict_mode(0)
for op in (lambda: h.pwrite(b\"x\" * 512, 0),
           lambda: h.zero(512, 0),
           lambda: h.trim(512, 0)):
    try:
        op()
        assert False, \"write succeeded\"
    except nbd.Error as e:
        # NBD carries EROFS as EPERM.
        assert e.errno in (\"EPERM\", \"EROFS\", \"EINVAL\"), e
"' 2>err
  test "$(md5sum < disk.qed)" = "$before"
}
