#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the QED fuzz target over deterministic mutants of seed images.
set -euo pipefail
seeds=seeds-qed
"$srcdir/make-qed-seeds.sh" "$seeds" ../tools/qad-img
# Peak heap per mutant (see replay-driver.c): the configured limits in
# fuzz-qed.c (the L1 table and the check's copy of one table, 8 KiB
# each; the L2 cache, 16 KiB; the check's cluster map, 8 KiB) plus a
# constant of 16 KiB for the image struct, names and the header.
export FUZZ_PEAK_LIMIT="${FUZZ_PEAK_LIMIT:-$(( 2*8192 + 16384 + 8192 + 16384 ))}"
exec ${VG:-} ./fuzz-qed-replay "${FUZZ_ITERATIONS:-20000}" "$seeds"/*.qed
