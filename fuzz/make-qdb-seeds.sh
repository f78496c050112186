#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Make small valid QDB seed files for the fuzzers (512-byte clusters):
# empty bitmaps, an ALL_ONES table entry, a partly dirty data cluster,
# a file with no bitmaps.
set -euo pipefail
out="$1"
qad_img="$2"
mkdir -p "$out"
cd "$out"
rm -f ./*.qdb
"$qad_img" create --format=qdb plain.qdb --size=1M --cluster-size=512 \
  -g 512 --bitmap=a --bitmap=b >/dev/null
"$qad_img" create --format=qdb dirty.qdb --size=4M --cluster-size=512 \
  -g 512 --bitmap=a >/dev/null
"$qad_img" bitmap dirty.qdb --add b -g 1K --add c -g 64K >/dev/null
# Set a's first table entry to ALL_ONES: the directory offset is at
# byte 16 of the header, a's table offset at byte 0 of its entry.
python3 - <<'PY'
import struct
with open("dirty.qdb", "r+b") as f:
    f.seek(16); d, = struct.unpack(">Q", f.read(8))
    f.seek(d); t, = struct.unpack(">Q", f.read(8))
    f.seek(t); f.write(struct.pack(">Q", 1))
PY
# b (1K granules) gets half a cluster of dirty bits: a data cluster.
"$qad_img" bitmap dirty.qdb --merge a --into b --disable c >/dev/null
"$qad_img" create --format=qdb nobitmaps.qdb --size=1M --cluster-size=512 \
  --bitmap=x >/dev/null
"$qad_img" bitmap nobitmaps.qdb --remove x >/dev/null
# Hostile sizes: 4 KiB clusters, three bitmaps whose 64-entry tables
# (512 bytes each in the file) are all ALL_ONES, so each stands for
# 256 KiB of set bits in memory: past the fuzz target's limit.
python3 - <<'PY'
import struct
cs, n = 4096, 3
entry = 48
hdr = b"QDB\0" + struct.pack(">IIIQII", 1, 12, n, cs, 64, n * entry)
hdr += bytes(64 - len(hdr))
d = b""
for i in range(n):
    e = struct.pack(">QQIIHH", (2 + i) * cs, 64 * cs * 8 * 512, 64, 512, 1, 1)
    e += bytes(40 - len(e)) + bytes([ord("a") + i])
    d += e + bytes(entry - len(e))
with open("hostile.qdb", "wb") as f:
    f.write(hdr)
    f.seek(cs)
    f.write(d)
    for i in range(n):
        f.seek((2 + i) * cs)
        f.write(struct.pack(">Q", 1) * 64)
    f.truncate((2 + n) * cs)
PY
