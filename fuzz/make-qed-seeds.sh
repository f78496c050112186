#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Make small valid QED seed images for the fuzzers (4K clusters, one-
# cluster tables so that the whole file is a few clusters).
set -euo pipefail
out="$1"
mkdir -p "$out"
qad_img="$2"
"$qad_img" create "$out/empty.qed" 1M --cluster-size=4K --table-size=1 >/dev/null
cp "$out/empty.qed" "$out/data.qed"
python3 - "$out/data.qed" <<'PY'
import struct, sys
# L1 at 4096 -> L2 at 8192; entries: data at 12288, zero, data at 16384.
f = sys.argv[1]
with open(f, "r+b") as fp:
    fp.seek(4096); fp.write(struct.pack("<Q", 8192))
    fp.seek(8192); fp.write(struct.pack("<QQQ", 12288, 1, 16384))
    fp.truncate(16384 + 4096)
    fp.seek(12288); fp.write(b"\xaa" * 4096)
    fp.seek(16384); fp.write(b"\xbb" * 4096)
PY
# Tables of 16 clusters (64 KiB), past the fuzz target's 8 KiB limit:
# every mutant that keeps them must be refused before allocation.
"$qad_img" create "$out/wide.qed" 1M --cluster-size=4K --table-size=16 >/dev/null
