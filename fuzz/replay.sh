#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# replay.sh TARGET FORMAT ITERATIONS: make the FORMAT seed files (with
# make-FORMAT-seeds.sh and the qad-img just built) in a directory of
# their own, then run fuzz-TARGET-replay over ITERATIONS deterministic
# mutants of each (FUZZ_ITERATIONS overrides).  Used by the
# fuzz-*-replay.sh tests.
set -euo pipefail
target="$1" format="$2" iterations="${FUZZ_ITERATIONS:-$3}"
case "$format" in
  qed) ext=qed ;;
  addcow) ext=add-cow ;;
  qdb) ext=qdb ;;
  *) echo "$0: unknown format $format" >&2; exit 1 ;;
esac
seeds="seeds-$target"
"${srcdir:-.}/make-$format-seeds.sh" "$seeds" "$(pwd)/../tools/qad-img"
exec ${VG:-} "./fuzz-$target-replay" "$iterations" "$seeds"/*."$ext"
