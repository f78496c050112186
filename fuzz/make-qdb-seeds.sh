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
