#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the QDB fuzz target over deterministic mutants of seed files.
set -euo pipefail
seeds=seeds-qdb
"$srcdir/make-qdb-seeds.sh" "$seeds" "$(pwd)/../tools/qad-img"
exec ${VG:-} ./fuzz-qdb-replay "${FUZZ_ITERATIONS:-5000}" "$seeds"/*.qdb
