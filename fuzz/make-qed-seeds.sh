#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Make small QED seed images for the fuzzers (4K clusters, one-cluster
# tables so that the whole file is a few clusters):
#   empty.qed    no data
#   data.qed     data, zero and data clusters
#   backing.qed  over base.raw (NO_PROBE), a data cluster, a zero cluster
#   probe.qed    over base.raw (probed), 513 KiB: a partial last cluster
#   repair.qed   NEED_CHECK, a cluster referenced twice, an invalid
#                entry, leaks below a data cluster that repair moves down
# The read-write target gives images naming base.raw a backing file of
# its own; base.raw here is only needed to create them.
set -euo pipefail
out="$1"
mkdir -p "$out"
qad_img="$2"
"$qad_img" create "$out/empty.qed" 1M --cluster-size=4K --table-size=1 >/dev/null
truncate -s 1M "$out/base.raw"
"$qad_img" create "$out/backing.qed" 1M --cluster-size=4K --table-size=1 \
  --backing=base.raw --backing-format=raw >/dev/null
"$qad_img" create "$out/probe.qed" 525312 --cluster-size=4K --table-size=1 \
  --backing=base.raw >/dev/null
rm -f "$out/base.raw"
cp "$out/empty.qed" "$out/data.qed"
cp "$out/empty.qed" "$out/repair.qed"
python3 - "$out" <<'PY'
import struct, sys
d = sys.argv[1]
def l1_offset(fp):
    fp.seek(40); return struct.unpack("<Q", fp.read(8))[0]
# data.qed: L1 -> L2 at 8192; entries: data at 12288, zero, data at 16384.
with open(d + "/data.qed", "r+b") as fp:
    l1 = l1_offset(fp)
    fp.seek(l1); fp.write(struct.pack("<Q", 8192))
    fp.seek(8192); fp.write(struct.pack("<QQQ", 12288, 1, 16384))
    fp.truncate(16384 + 4096)
    fp.seek(12288); fp.write(b"\xaa" * 4096)
    fp.seek(16384); fp.write(b"\xbb" * 4096)
# backing.qed: entry 0 data, entry 2 zero.
with open(d + "/backing.qed", "r+b") as fp:
    fp.seek(0, 2); end = fp.tell()
    l1 = l1_offset(fp)
    fp.seek(l1); fp.write(struct.pack("<Q", end))
    fp.seek(end); fp.write(struct.pack("<QQQ", end + 4096, 0, 1))
    fp.truncate(end + 8192)
    fp.seek(end + 4096); fp.write(b"\xcc" * 4096)
# repair.qed: NEED_CHECK; L2 at 8192: entries 0 and 3 both -> 12288,
# entry 1 -> 13000 (unaligned), entry 5 -> 28672; 16384..28671 leaked.
with open(d + "/repair.qed", "r+b") as fp:
    fp.seek(16); f, = struct.unpack("<Q", fp.read(8))
    fp.seek(16); fp.write(struct.pack("<Q", f | 2))
    l1 = l1_offset(fp)
    fp.seek(l1); fp.write(struct.pack("<Q", 8192))
    fp.seek(8192); fp.write(struct.pack("<QQQQQQ", 12288, 13000, 0, 12288, 0, 28672))
    fp.truncate(28672 + 4096)
    fp.seek(12288); fp.write(b"\x11" * 4096)
    fp.seek(16384); fp.write(b"\x22" * 4096)
    fp.seek(28672); fp.write(b"\x33" * 4096)
PY
# Tables of 16 clusters (64 KiB), past the fuzz target's 8 KiB limit:
# every mutant that keeps them must be refused before allocation.
"$qad_img" create "$out/wide.qed" 1M --cluster-size=4K --table-size=16 >/dev/null
