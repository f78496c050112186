#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Make small valid add-cow seed sidecars for the fuzzers (4K clusters,
# so that header + bitmap are two 4K blocks).
set -euo pipefail
out="$1"
qad_img="$2"
mkdir -p "$out"
cd "$out"
rm -f ./*.add-cow
truncate -s 256K base.img
"$qad_img" create --format=add-cow plain.add-cow --image=plain.raw \
  --size=1M --cluster-size=4K >/dev/null
"$qad_img" create --format=add-cow backing.add-cow --image=b.raw \
  --backing=base.img --backing-format=raw --size=1M --cluster-size=4K >/dev/null
cp backing.add-cow bits.add-cow
printf '\xff\x0f\x00\x81' | dd of=bits.add-cow bs=1 seek=4096 conv=notrunc status=none
cp plain.add-cow all.add-cow
printf '\x01' | dd of=all.add-cow bs=1 seek=32 conv=notrunc status=none
head -c 4096 backing.add-cow > fresh.add-cow
