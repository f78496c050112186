#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
# Run the QED fuzz target over deterministic mutants of seed images.
set -euo pipefail
seeds=seeds-qed
"$srcdir/make-qed-seeds.sh" "$seeds" ../tools/qad-img
exec ${VG:-} ./fuzz-qed-replay "${FUZZ_ITERATIONS:-20000}" "$seeds"/*.qed
