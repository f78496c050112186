#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# run-libfuzzer.sh SECONDS [TARGET...]: run each libFuzzer target
# (default: all six) for SECONDS seconds, from the fuzz/ directory of a
# build configured with CC=clang --enable-fuzzing (and, best,
# --enable-sanitizers).  Each target starts from the seed files and
# from corpus-TARGET/, which keeps what it finds, so that long runs
# build on each other.  Prints one line per target with the number of
# executions; a crash, leak, sanitizer report or timeout leaves the
# input in artifacts-TARGET/ and makes the script exit 1.
#
# Environment: QAD_IMG (default ../tools/qad-img) makes the seeds;
# FUZZ_TIMEOUT (default 30) seconds for one input; FUZZ_JOBS (default
# 1) runs that many targets at once.
set -uo pipefail
seconds="${1:?usage: $0 SECONDS [TARGET...]}"
shift
targets=("$@")
test ${#targets[@]} -gt 0 ||
  targets=(qed addcow qdb qed-rw addcow-rw qdb-rw)
here="$(cd "$(dirname "$0")" && pwd)"
qad_img="$(realpath "${QAD_IMG:-../tools/qad-img}")"
timeout_s="${FUZZ_TIMEOUT:-30}"

run_one ()
{
  local t="$1" fmt ext log
  case "$t" in
    qed*) fmt=qed ext=qed ;;
    addcow*) fmt=addcow ext=add-cow ;;
    qdb*) fmt=qdb ext=qdb ;;
  esac
  if ! test -x "./fuzz-$t"; then
    echo "fuzz-$t: not built (configure with CC=clang --enable-fuzzing)"
    return 1
  fi
  mkdir -p "corpus-$t" "artifacts-$t" "seeds-lf-$t"
  "$here/make-$fmt-seeds.sh" "seeds-lf-$t" "$qad_img" >/dev/null
  cp "seeds-lf-$t"/*."$ext" "corpus-$t"/
  log="fuzz-$t.libfuzzer.log"
  "./fuzz-$t" -max_total_time="$seconds" -timeout="$timeout_s" \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="artifacts-$t/" "corpus-$t" >"$log" 2>&1
  local r=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  if test $r -eq 0; then
    echo "fuzz-$t: ${execs:-?} executions in $seconds s," \
      "corpus $(ls "corpus-$t" | wc -l) files"
  else
    echo "fuzz-$t: FAILED after ${execs:-?} executions (exit $r);" \
      "input in artifacts-$t/, log in $log:"
    grep -E 'invariant broken|ERROR|SUMMARY|Test unit written' "$log" | head -5
  fi
  return $r
}

status=0
jobs="${FUZZ_JOBS:-1}"
pids=()
for t in "${targets[@]}"; do
  if test "$jobs" -le 1; then
    run_one "$t" || status=1
  else
    run_one "$t" > "fuzz-$t.summary" &
    pids+=($!)
    if test ${#pids[@]} -ge "$jobs"; then
      wait "${pids[0]}" || status=1
      pids=("${pids[@]:1}")
    fi
  fi
done
for p in "${pids[@]}"; do
  wait "$p" || status=1
done
if test "$jobs" -gt 1; then
  for t in "${targets[@]}"; do cat "fuzz-$t.summary"; done
fi
exit $status
