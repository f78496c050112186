#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the add-cow fuzz target over deterministic mutants of seed sidecars.
set -euo pipefail
seeds=seeds-addcow
"$srcdir/make-addcow-seeds.sh" "$seeds" "$(pwd)/../tools/qad-img"
exec ${VG:-} ./fuzz-addcow-replay "${FUZZ_ITERATIONS:-5000}" "$seeds"/*.add-cow
