#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the QDB fuzz target over deterministic mutants of seed files.
set -euo pipefail
seeds=seeds-qdb
"$srcdir/make-qdb-seeds.sh" "$seeds" "$(pwd)/../tools/qad-img"
# Peak heap per mutant (see replay-driver.c): the harness holds up to
# three models of the file at once (the parsed one, its rewrite in a
# memory file and that file parsed again), each bounded by the limit
# in fuzz-qdb.c (512 KiB), plus a constant of 64 KiB.
export FUZZ_PEAK_LIMIT="${FUZZ_PEAK_LIMIT:-$(( 3*524288 + 65536 ))}"
exec ${VG:-} ./fuzz-qdb-replay "${FUZZ_ITERATIONS:-5000}" "$seeds"/*.qdb
