#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# test-check-sh-red.sh: a broken object turns ./check.sh red.
#
# Notes on the design.  A green check.sh is worth something only if a
# broken build cannot produce it.  This copies the tree (tracked and
# new files, as check.sh's own copies do) to a scratch directory and
# runs check.sh there three times, on a few server tests only
# (CHECK_ONLY_TESTS; no sanitizer, valgrind or install steps), so that
# it takes a couple of minutes rather than the whole suite:
#
#   1. unchanged: must be green with nothing skipped, else the red
#      results below would prove nothing;
#   2. the QED plugin deleted after the build: bats run directly must
#      FAIL (not skip) the QED tests, and check.sh must go red (the
#      build refuses to make the ./qed.so link to a missing object);
#   3. the add-cow filter's .open made to fail (the registration of a
#      failing .open is patched into the copy's source, which depends
#      only on nbdkit's filter struct, not on the filter's internals):
#      the servers start but refuse every handshake, and check.sh must
#      go red with failures, not skips.
#
# Each run's summary line must have check.sh's format
# "N passed, N failed, N skipped".  Needs a git checkout (check.sh's
# copy does too); exits 77 (skip) in a release tarball.
#
# Environment: CHECK_RED_TESTS overrides the server tests used.

set -euo pipefail

srcdir="$(cd "$(dirname "$0")/.." && pwd)"
tests="${CHECK_RED_TESTS:-test-qed-corrupt.bats test-addcow-zero-trim.bats}"

if ! git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
  echo "$0: SKIP: needs a git checkout"
  exit 77
fi

tmp="$(mktemp -d /tmp/check-sh-red.XXXXXX)"
cleanup () { rm -rf "$tmp"; }
trap cleanup EXIT
tree="$tmp/tree"
mkdir "$tree"
(cd "$srcdir" &&
   git ls-files -z -c -o --exclude-standard | tar -c --null -T - ) |
  tar -x -C "$tree"

fail () { echo "$0: FAIL: $*" >&2; exit 1; }

# run_check NAME: run the copy's check.sh on $tests; sets rc and the
# three counts from its summary line.
run_check ()
{
  local name="$1" line
  set +e
  (cd "$tree" &&
     SKIP_INSTALL=1 SKIP_SANITIZERS=1 SKIP_TSAN=1 SKIP_VALGRIND=1 \
     SKIP_SELFTEST=1 SKIP_INSTALL_TEST=1 JOBS="${JOBS:-2}" \
     CHECK_ONLY_TESTS="$tests" ./check.sh) > "$tmp/$name.out" 2>&1
  rc=$?
  set -e
  line="$(tail -n 1 "$tmp/$name.out")"
  echo "$name: exit status $rc, summary: $line"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
    npass="${BASH_REMATCH[1]}" nfail="${BASH_REMATCH[2]}"
    nskip="${BASH_REMATCH[3]}"
  else
    npass= nfail= nskip=
  fi
}

show () { tail -n 60 "$tmp/$1.out" >&2; }

# 1. Unchanged: green, nothing skipped.
run_check baseline
if test "$rc" -ne 0 || test -z "$npass" || test "$npass" -eq 0 ||
   test "$nfail" -ne 0 || test "$nskip" -ne 0; then
  show baseline
  fail "the unchanged tree is not green with nothing skipped"
fi

# 2. The QED plugin deleted after the build.
rm -f "$tree/qed.so" "$tree/plugins/qed/.libs/nbdkit-qed-plugin.so"
set +e
(cd "$tree/tests" && abs_top_builddir="$tree" abs_top_srcdir="$tree" \
   bats --tap test-qed-corrupt.bats) > "$tmp/bats-no-qed.out" 2>&1
set -e
grep -q '^not ok' "$tmp/bats-no-qed.out" ||
  { cat "$tmp/bats-no-qed.out" >&2; fail "no test failed without qed.so"; }
! grep -q '^ok .* # skip' "$tmp/bats-no-qed.out" ||
  { cat "$tmp/bats-no-qed.out" >&2; fail "a test skipped without qed.so"; }
echo "no-qed (bats directly): $(grep -c '^not ok' "$tmp/bats-no-qed.out") not ok, 0 skipped"
run_check no-qed
if test "$rc" -eq 0 || test -z "$nfail" || test "$nfail" -eq 0; then
  show no-qed
  fail "check.sh is not red with the QED plugin deleted"
fi
grep -q 'nbdkit-qed-plugin.so is missing' "$tmp/no-qed.out" ||
  { show no-qed; fail "check.sh went red, but not for the missing plugin"; }
# Rebuild it for the next case.
rm -f "$tree"/plugins/qed/*.la
(cd "$tree" && make -j"${JOBS:-2}" >/dev/null)

# 3. The add-cow filter's .open fails.
f="$tree/filters/addcow/addcow.c"
open_fn="$(sed -n 's/^  \.open *= *\([a-z_]*\),$/\1/p' "$f")"
test -n "$open_fn" && grep -q '^static struct nbdkit_filter filter = {' "$f" ||
  fail "cannot find the filter struct and its .open in $f: update this test"
sed -i \
  -e '/^static struct nbdkit_filter filter = {/i\
static void *\
injected_open_failure (nbdkit_next_open *next, nbdkit_context *nxdata,\
                       int readonly, const char *exportname, int is_tls)\
{\
  (void) '"$open_fn"';\
  nbdkit_error ("test-check-sh-red: injected .open failure");\
  return NULL;\
}\
' \
  -e 's/^\(  \.open *= *\)[a-z_]*,$/\1injected_open_failure,/' \
  "$f"
grep -q '= *injected_open_failure,' "$f" ||
  fail "cannot patch .open in $f: update this test"
run_check addcow-open-fails
if test "$rc" -eq 0 || test -z "$nfail" || test "$nfail" -eq 0; then
  show addcow-open-fails
  fail "check.sh is not red with a failing add-cow .open"
fi
grep -q 'does not complete a handshake' "$tmp/addcow-open-fails.out" ||
  cat "$tree"/tests/*.log | grep -q "does not complete a handshake" ||
  { show addcow-open-fails; fail "red, but not because the server refused the handshake"; }

echo "PASS: check.sh goes red for a deleted plugin and for a failing filter .open"
