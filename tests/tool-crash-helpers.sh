# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers for the tests of the offline qad-img verbs (test-tool-resize.bats,
# test-tool-commit.bats).  Load after functions.sh.
#
# kill_at_every_call DIR VERIFY CMD...: run CMD (a qad-img command)
# once in a copy of DIR with tests/fault-inject.so counting its writes,
# syncs, truncations and fallocates on the files in the copy; then,
# for every N of those calls, run CMD in a fresh copy killed with
# SIGKILL just before call N (FAULT_KILL), and run the shell function
# VERIFY in that copy, which must return 0.  Prints the number of
# crash points.  Every byte a killed process wrote before call N is in
# the page cache, so this is exactly kill -9 between two calls.

# tool_test_setup: what each test of an offline verb needs.
tool_test_setup ()
{
  requires_file "$QAD_IMG"
  requires qemu-img --version
  requires qemu-io --version
  cd "$BATS_TEST_TMPDIR"
}

FAULT_SO="${NBDKIT_PRELOAD:+$NBDKIT_PRELOAD:}$TESTS_BIN/.libs/fault-inject.so"

kill_at_every_call ()
{
  local dir="$1" verify="$2"; shift 2
  local calls n

  rm -rf "$dir.count"
  cp -a "$dir" "$dir.count"
  (cd "$dir.count" && FAULT_PATH="$PWD" FAULT_LOG="$PWD/.calls" \
     LD_PRELOAD="$FAULT_SO" "$@" >/dev/null)
  calls=$(wc -l < "$dir.count/.calls")
  test "$calls" -gt 0
  for n in $(seq 1 "$calls"); do
    rm -rf "$dir.kill"
    cp -a "$dir" "$dir.kill"
    (cd "$dir.kill" && FAULT_PATH="$PWD" FAULT_NTH="$n" FAULT_KILL=1 \
       LD_PRELOAD="$FAULT_SO" "$@" >/dev/null 2>&1) && {
      echo "crash point $n of $calls: the command was not killed" >&2
      return 1
    }
    (cd "$dir.kill" && "$verify") || {
      echo "crash point $n of $calls: $verify failed" >&2
      return 1
    }
  done
  echo "$calls"
}

# check_ok FILE [qemu]: qad-img check (and qemu-img check with "qemu")
# finds no corruption: exit 0, or 3 (leaked clusters only).
check_ok ()
{
  local st=0
  "$QAD_IMG" check "$1" >/dev/null || st=$?
  test "$st" -eq 0 || test "$st" -eq 3 || {
    echo "qad-img check $1: exit $st" >&2; return 1; }
  if test "${2:-}" = qemu; then
    st=0
    qemu-img check "$1" >/dev/null 2>&1 || st=$?
    test "$st" -eq 0 || test "$st" -eq 3 || {
      echo "qemu-img check $1: exit $st" >&2; return 1; }
  fi
}

# log_calls DIR LOG CMD...: run CMD in a copy of DIR (DIR.log) with
# fault-inject.so logging every write, sync, truncation and fallocate
# on its files, with the file's path, to LOG.
log_calls ()
{
  local dir="$1" log="$2"; shift 2
  rm -rf "$dir.log" "$log"
  cp -a "$dir" "$dir.log"
  (cd "$dir.log" && FAULT_PATH="$PWD" FAULT_LOG="$log" FAULT_LOG_FILES=1 \
     LD_PRELOAD="$FAULT_SO" "$@" >/dev/null)
}

# durable_before LOG A B [KIND]: in the calls logged, no change
# (write, truncate, fallocate; only KIND calls when given) to the file
# named B happens while the file named A has a change not yet followed
# by a sync: what A holds is durable before B changes, whatever a power
# cut keeps.  A and B may be the same file (KIND then tells the later
# change from the earlier ones).  Fails (naming the call) otherwise,
# and when B never changes after A did.
durable_before ()
{
  awk -v a="/$2" -v b="/$3" -v bkind="${4:-}" '
    function is (path, name) { return substr (path, length (path) - length (name) + 1) == name }
    { kind = $1; path = $NF }
    kind != "sync" && is(path, b) && (bkind == "" || kind == bkind) {
      if (dirty) { print "unsynced " a " when " b " changes: " $0 > "/dev/stderr"; bad = 1; exit 1 }
      if (changed_a) ordered = 1
    }
    is(path, a) { if (kind == "sync") dirty = 0; else { dirty = 1; changed_a = 1 } }
    END { if (bad) exit 1; if (!ordered) { print "no change to " b " after " a > "/dev/stderr"; exit 1 } }
  ' "$1"
}

# json_fields KEY=VALUE...: the JSON document on stdin has exactly
# these keys, with these values (numbers compared as numbers).
json_fields ()
{
  /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
want = {}
for a in sys.argv[1:]:
    k, v = a.split("=", 1)
    want[k] = int(v) if v.isdigit() else v
assert d == want, (d, want)' "$@"
}

# documented_keys VERB: every key of the JSON document on stdin is in
# the example object qad-img.pod gives for VERB.
documented_keys ()
{
  /usr/bin/python3 -c '
import json, re, sys
pod = open(sys.argv[1]).read()
sect = pod.split("=item B<" + sys.argv[2] + ">", 1)[1].split("\n=item B<", 1)[0]
doc = json.loads(re.search(r"\n( \{\n.*?\n \})\n", sect, re.S).group(1))
d = json.load(sys.stdin)
assert sorted(d) == sorted(doc), (sorted(d), sorted(doc))' \
    "$abs_top_srcdir/tools/qad-img.pod" "$1"
}
