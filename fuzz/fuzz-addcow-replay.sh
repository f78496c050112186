#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the add-cow fuzz target over deterministic mutants of seed sidecars.
set -euo pipefail
seeds=seeds-addcow
"$srcdir/make-addcow-seeds.sh" "$seeds" "$(pwd)/../tools/qad-img"
# Peak heap per mutant (see replay-driver.c): the bitmap limit in
# fuzz-addcow.c (64 KiB) plus a constant of 64
# KiB for the header area (at most the 8 KiB seed files here) read and
# rebuilt, and the names.
export FUZZ_PEAK_LIMIT="${FUZZ_PEAK_LIMIT:-$(( 65536 + 65536 ))}"
exec ${VG:-} ./fuzz-addcow-replay "${FUZZ_ITERATIONS:-5000}" "$seeds"/*.add-cow
