#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# ./check.sh: install what is missing, build, run every test.
#
# On a fresh Debian 12 machine (as root) it installs the build and test
# dependencies with apt-get, then runs autoreconf, configure and
# "make check" with warnings as errors, then the unit tests again in a
# sanitizer (ASan + UBSan) build, the concurrency tests in a
# ThreadSanitizer build, and the unit tests under valgrind; last, a
# test of this script itself (a broken object must turn it red).  It
# ends with a line "N passed, N failed, N skipped" and exits non-zero
# on any failure.  A skip is never a pass: tests skip only when an
# optional external tool is missing; an object this tree builds is
# never optional.
#
# Environment:
#   SKIP_INSTALL=1     do not touch packages
#   SKIP_SANITIZERS=1  skip the ASan/UBSan build
#   SKIP_TSAN=1        skip the ThreadSanitizer build
#   SKIP_VALGRIND=1    skip the valgrind run
#   SKIP_LIBFUZZER=1   skip the libFuzzer runs (they need clang)
#   FUZZ_SECONDS=N     seconds per libFuzzer target (default 8)
#   SKIP_SELFTEST=1    skip tests/test-check-sh-red.sh
#   SKIP_INSTALL_TEST=1  skip the "make install" short-name check (root)
#   ASAN_SERVER_TESTS, TSAN_SERVER_TESTS="test-a.bats ..."
#                      the server tests of the sanitizer builds
#   TSAN_TIMEOUT=N     seconds for each ThreadSanitizer run (default 600)
#   CHECK_ONLY_TESTS="test-a.bats ..."
#                      build, run only these files of tests/, print the
#                      summary and stop (used by the self-test)
#   JOBS=N             parallel make jobs (default: number of CPUs)

set -euo pipefail
cd "$(dirname "$0")"
srcdir="$(pwd)"
JOBS="${JOBS:-$(nproc)}"

"$srcdir/scripts/install-deps.sh" full

export PYENV_VERSION=system
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg

# Each step says when it starts (seconds since check.sh started), so a
# CI log shows where the time goes.
step () { printf '\n=== %s === (at %d s)\n' "$*" "$SECONDS"; }

# Server tests also run against the sanitizer build of the objects.
# Only tests whose servers start successfully: with the sanitizer
# runtimes preloaded, an nbdkit that exits with an error can deadlock in
# a library destructor at exit (glibc's locale lock, seen in p11-kit).
ASAN_SERVER_TESTS="${ASAN_SERVER_TESTS:-test-qed-concurrent.bats test-qed-differential.bats test-qed-crash.bats test-addcow-differential.bats test-dirty-bitmap-differential.bats}"
# Under ThreadSanitizer: the tests with many connections or many
# requests in flight against one server (same caveat as above).
TSAN_SERVER_TESTS="${TSAN_SERVER_TESTS:-test-qed-concurrent.bats test-addcow-race.bats test-addcow-differential.bats test-dirty-bitmap-differential.bats}"

status=0
passed=0 failed=0 skipped=0
count_results ()
{
  # Sum the ":test-result:" lines automake writes in each .trs file.
  local dir="$1" p f s
  p=$( (find "$dir" -name '*.trs' -exec grep -h '^:test-result: \(PASS\|XFAIL\)' {} + || true) | wc -l)
  f=$( (find "$dir" -name '*.trs' -exec grep -h '^:test-result: \(FAIL\|XPASS\|ERROR\)' {} + || true) | wc -l)
  s=$( (find "$dir" -name '*.trs' -exec grep -h '^:test-result: SKIP' {} + || true) | wc -l)
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}
summary ()
{
  echo
  echo "check.sh ran for $SECONDS s"
  echo "$passed passed, $failed failed, $skipped skipped"
  test "$failed" -eq 0 || status=1
  exit $status
}

step "autoreconf"
autoreconf -fi >/dev/null

# Main build, in the source tree so that ./qed.so etc. exist for users.
step "configure"
./configure --enable-werror -q
step "make"
if ! make -j"$JOBS" >/dev/null; then
  echo "FAILED: the build"
  failed=$((failed + 1))
  summary
fi

if test -n "${CHECK_ONLY_TESTS:-}"; then
  step "make check: $CHECK_ONLY_TESTS"
  find tests -name '*.trs' -delete
  make -C tests check TESTS="$CHECK_ONLY_TESTS" || status=1
  count_results "$srcdir/tests"
  summary
fi

step "make check"
make -j"$JOBS" check || status=1

count_results "$srcdir/common"
count_results "$srcdir/tools"
count_results "$srcdir/fuzz"
count_results "$srcdir/tests"
# Show the logs of whatever failed.
(find "$srcdir" -path "$srcdir/build-*" -prune -o -name '*.trs' \
   -exec grep -l '^:test-result: \(FAIL\|XPASS\|ERROR\)' {} + || true) |
  while read -r trs; do
    step "FAILED: ${trs%.trs}.log"; cat "${trs%.trs}.log" || true
  done

# Copy the sources (tracked and new, not ignored) for a second build:
# configure refuses a VPATH build from an already configured tree.
copy_sources ()
{
  rm -rf "$1" && mkdir -p "$1"
  if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z -c -o --exclude-standard | tar -c --null -T - | tar -x -C "$1"
  else
    # A release tarball: copy it, then clean the copy.
    tar -c --exclude=./build-asan . | tar -x -C "$1"
    (cd "$1" && { test ! -f Makefile || make distclean >/dev/null; })
  fi
}

if test -z "${SKIP_SANITIZERS:-}"; then
  step "unit tests and fuzz replay under ASan + UBSan"
  copy_sources build-asan
  (cd build-asan && autoreconf -fi >/dev/null &&
     ./configure --enable-werror --enable-sanitizers -q &&
     make -j"$JOBS" >/dev/null &&
     ASAN_OPTIONS=detect_leaks=1 make -j"$JOBS" -C common check &&
     ASAN_OPTIONS=detect_leaks=1 make -j"$JOBS" -C fuzz check) || status=1
  # The instrumented plugin and filters inside a real (uninstrumented)
  # nbdkit: preload the runtimes into nbdkit only.
  step "server tests with the ASan + UBSan plugin and filters"
  (cd build-asan &&
     NBDKIT_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
     ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
     UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
     make -j"$JOBS" -C tests check TESTS="$ASAN_SERVER_TESTS") || status=1
  count_results "$srcdir/build-asan/tests"
  count_results "$srcdir/build-asan/common"
  count_results "$srcdir/build-asan/fuzz"
fi

# Each fuzz target under libFuzzer for a fixed budget (the replay tests
# above ran the seeds and fixed mutants): a clang build of common/ and
# fuzz/ only, with ASan + UBSan.  Longer runs: see README, "Testing".
if test -z "${SKIP_LIBFUZZER:-}" && command -v clang >/dev/null &&
   echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then
  step "libFuzzer: each fuzz target for ${FUZZ_SECONDS:-8} s"
  copy_sources build-fuzz
  if (cd build-fuzz && autoreconf -fi >/dev/null &&
        CC=clang ./configure --enable-fuzzing --enable-sanitizers -q &&
        make -j"$JOBS" -C common >/dev/null &&
        make -j"$JOBS" -C fuzz fuzz-qed fuzz-addcow fuzz-qdb fuzz-qed-rw \
          fuzz-addcow-rw fuzz-qdb-rw >/dev/null &&
        cd fuzz && QAD_IMG="$srcdir/tools/qad-img" \
          ./run-libfuzzer.sh "${FUZZ_SECONDS:-8}"); then
    passed=$((passed + 1))
  else
    echo "FAILED: libFuzzer"
    failed=$((failed + 1))
  fi
fi

if test -z "${SKIP_TSAN:-}"; then
  # The unit tests (among them the threaded ones: test-rangelock,
  # test-qed-write) and the server tests that hammer one server from
  # many connections, with the plugin and filters built with TSan and
  # loaded into nbdkit with libtsan preloaded.  Every report is written
  # to build-tsan/reports/ and counts as a failure, whatever the exit
  # status of the process that found it.  Time-bounded (TSAN_TIMEOUT
  # seconds for each of the two runs).
  step "ThreadSanitizer: unit tests and concurrency server tests"
  tsan_reports="$srcdir/build-tsan/reports"
  copy_sources build-tsan
  mkdir -p "$tsan_reports"
  (cd build-tsan && autoreconf -fi >/dev/null &&
     ./configure --enable-werror --enable-tsan -q &&
     make -j"$JOBS" >/dev/null &&
     export TSAN_OPTIONS="log_path=$tsan_reports/tsan:second_deadlock_stack=1" &&
     timeout "${TSAN_TIMEOUT:-600}" make -j"$JOBS" -C common check &&
     NBDKIT_PRELOAD="$(gcc -print-file-name=libtsan.so)" \
     timeout "${TSAN_TIMEOUT:-600}" \
       make -j"$JOBS" -C tests check TESTS="$TSAN_SERVER_TESTS") || status=1
  count_results "$srcdir/build-tsan/common"
  count_results "$srcdir/build-tsan/tests"
  for r in "$tsan_reports"/tsan.*; do
    test -e "$r" || continue
    step "ThreadSanitizer report: $r"; cat "$r"
    failed=$((failed + 1))
  done
fi

if test -z "${SKIP_VALGRIND:-}"; then
  step "unit tests under valgrind"
  # Same binaries as the main build; the .trs files are rewritten, so
  # count them again (the main run's were counted above).
  make check-valgrind || status=1
  count_results "$srcdir/common"
  count_results "$srcdir/tools"
fi

if test -z "${SKIP_SELFTEST:-}"; then
  # A green run must not hide a broken object: break one in a copy of
  # the tree and check that this script goes red (a few server tests
  # only, see the script).
  step "self-test: a broken object turns check.sh red"
  selftest=0
  "$srcdir/tests/test-check-sh-red.sh" || selftest=$?
  case "$selftest" in
    0) passed=$((passed + 1)) ;;
    77) skipped=$((skipped + 1)) ;;     # a release tarball: no git
    *) echo "FAILED: tests/test-check-sh-red.sh"; failed=$((failed + 1)) ;;
  esac
fi

# make install puts the objects where nbdkit looks for short names.
if test "$(id -u)" -eq 0 && test -z "${SKIP_INSTALL_TEST:-}"; then
  step "make install: short names"
  install_ok=0
  smoke="$(mktemp -d)"
  make install >/dev/null &&
    nbdkit qed --dump-plugin | grep -q '^name=qed$' &&
    truncate -s 1M "$smoke/disk.raw" &&
    nbdkit -U - --filter=dirty-bitmap --filter=addcow file "$smoke/disk.raw" \
      addcow="$smoke/disk.add-cow" dirty-bitmap="$smoke/disk.qdb" \
      --run 'nbdinfo --size "$uri"' | grep -q '^1048576$' &&
    test -f /usr/local/share/man/man1/nbdkit-qed-plugin.1 && install_ok=1
  rm -rf "$smoke"
  make uninstall >/dev/null || true
  if test "$install_ok" -eq 1; then
    echo "installed and found by short name: ok"
    passed=$((passed + 1))
  else
    echo "FAILED: make install / short names"
    failed=$((failed + 1))
  fi
fi

summary
