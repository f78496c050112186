# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers for the bats tests, after nbdkit's tests/functions.sh.
# Load with:   load functions.sh
#
# Each test gets its own scratch directory ($BATS_TEST_TMPDIR, made
# and removed by bats).  Servers listen on Unix sockets inside it and
# are killed by teardown, which every test file gets by loading this.

: "${abs_top_builddir:=$(cd "$BATS_TEST_DIRNAME/.." && pwd)}"
: "${abs_top_srcdir:=$abs_top_builddir}"
export abs_top_builddir abs_top_srcdir
export PYENV_VERSION=system
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export LC_ALL=C

# NBDKIT_PRELOAD: the sanitizer runtimes, when the objects under test
# were built with --enable-sanitizers (nbdkit itself is not).  Every
# nbdkit the tests start, directly or through start_nbdkit, gets them.
if test -n "${NBDKIT_PRELOAD:-}"; then
  nbdkit () { LD_PRELOAD="$NBDKIT_PRELOAD" command nbdkit "$@"; }
fi

# _exec_nbdkit ARGS...: replace the current (sub)shell by nbdkit, so
# that "_exec_nbdkit ... &" leaves nbdkit's own pid in $! (the function
# above would leave the pid of a subshell, and teardown would kill the
# subshell and miss the server).
_exec_nbdkit ()
{
  if test -n "${NBDKIT_PRELOAD:-}"; then
    LD_PRELOAD="$NBDKIT_PRELOAD" exec nbdkit "$@"
  fi
  exec nbdkit "$@"
}

QED_PLUGIN="$abs_top_builddir/qed.so"
ADDCOW_FILTER="$abs_top_builddir/addcow.so"
DIRTY_BITMAP_FILTER="$abs_top_builddir/dirty-bitmap.so"
QAD_IMG="$abs_top_builddir/tools/qad-img"
# Test helper programs built in tests/.
TESTS_BIN="$abs_top_builddir/tests"

# requires CMD [ARGS...]: skip the test unless CMD ARGS runs successfully.
requires ()
{
  "$@" </dev/null >/dev/null 2>&1 || skip "requires: $*"
}

# requires_file FILE: skip unless FILE exists.  Only for files from
# outside this tree (another package's plugin, say).  A file this tree
# builds or ships (under $abs_top_builddir or $abs_top_srcdir) is never
# optional: if it is missing, the build is broken, and the test fails.
requires_file ()
{
  test -e "$1" && return 0
  case "$1" in
    "$abs_top_builddir"/*|"$abs_top_srcdir"/*)
      echo "missing: $1 (built by this tree: a missing object is a failure, not a skip)" >&2
      return 1 ;;
  esac
  skip "requires file: $1"
}

# NBD_PYTHON: a python3 with libnbd's nbd module, for the Python
# clients here (*.py that import nbd) and for nbdsh, which runs
# "python3 -m nbd" with the first python3 on PATH (a pyenv or
# virtualenv one may lack the module).  Found once per test by
# scripts/nbd-python.sh; where there is none, every use says so.
. "$abs_top_srcdir/scripts/nbd-python.sh"
_no_nbd_python_msg="no python3 with libnbd's nbd module: apt-get install python3-libnbd, or set NBD_PYTHON"
_no_nbd_python ()
{
  echo "$_no_nbd_python_msg" >&2
  return 127
}
NBD_PYTHON="$(nbd_python 2>/dev/null)" || NBD_PYTHON=_no_nbd_python
export NBD_PYTHON
# nbdsh: a command first on PATH, not a shell function, so that the
# shells nbdkit --run starts (and any other child) get it too.  Written
# by the first load of a run (one test file): later loads keep it.
_nbdsh_dir="${BATS_RUN_TMPDIR:-$BATS_TMPDIR}/nbdsh-bin"
if ! test -x "$_nbdsh_dir/nbdsh"; then
  if test "$NBD_PYTHON" = _no_nbd_python; then
    _nbdsh_exec="echo \"$_no_nbd_python_msg\" >&2; exit 127"
  else
    _nbdsh_exec="exec '$NBD_PYTHON' -m nbd \"\$@\""
  fi
  mkdir -p "$_nbdsh_dir"
  # Written aside and renamed: tests of one run may do this at once.
  printf '#!/bin/sh\n%s\n' "$_nbdsh_exec" >"$_nbdsh_dir/nbdsh.$$"
  chmod +x "$_nbdsh_dir/nbdsh.$$"
  mv -f "$_nbdsh_dir/nbdsh.$$" "$_nbdsh_dir/nbdsh"
fi
PATH="$_nbdsh_dir:$PATH"

requires_nbdsh ()
{
  requires nbdsh -c 'import nbd'
}

# The file that lists the pids that teardown must kill.
_pids_file () { echo "$BATS_TEST_TMPDIR/.server-pids"; }

# start_nbdkit SOCKET ARGS...: start nbdkit in the background on a Unix
# socket, wait until it completes a handshake on the default export,
# and register it for cleanup.  The server's stderr goes to SOCKET.log.
# Fails (printing the log) if the server exits, or does not answer, or
# refuses the handshake (a plugin or filter whose .open fails): a test
# must never go on against a server that is not serving.
#
# nbdkit 1.32 writes the pidfile before it runs .after_fork (where the
# dirty-bitmap filter writes a new QDB file), and the main loop answers
# only after that, so a completed handshake is also the point from
# which the files the server creates are complete.
start_nbdkit ()
{
  local sock="$1"; shift
  local pidfile="$sock.pid"
  rm -f "$sock" "$pidfile"
  _exec_nbdkit -U "$sock" -P "$pidfile" -f "$@" >"$sock.log" 2>&1 &
  local pid=$!
  echo "$pid" >> "$(_pids_file)"
  local i
  for i in $(seq 1 300); do
    if test -s "$pidfile" && test -S "$sock"; then
      _handshake "$sock" "$pid" && return 0
      echo "nbdkit does not complete a handshake: nbdkit $*" >&2
      cat "$sock.log" >&2
      return 1
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "nbdkit failed to start: nbdkit $*" >&2
      cat "$sock.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "nbdkit did not start within 30 s: nbdkit $*" >&2
  cat "$sock.log" >&2
  return 1
}

# _handshake SOCKET PID: a client completes a handshake on the default
# export (which opens the plugin and every filter) within 30 s.  The
# socket is listening once it exists, so the first attempt normally
# decides; a few retries cover a loaded machine.
_handshake ()
{
  local sock="$1" pid="$2" i out
  for i in 1 2 3; do
    kill -0 "$pid" 2>/dev/null || return 1
    if out="$(timeout 30 nbdinfo --size "$(nbd_uri "$sock")" 2>&1)"; then
      return 0
    fi
    sleep 0.2
  done
  echo "handshake: $out" >&2
  return 1
}

# server_pid SOCKET: the pid of the server started on SOCKET.
server_pid () { cat "$1.pid"; }

# stop_nbdkit SOCKET [SIGNAL]: stop one server and wait for it to exit.
stop_nbdkit ()
{
  local sock="$1" sig="${2:-TERM}" pid i
  pid="$(cat "$sock.pid")"
  kill -s "$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "server $pid did not exit" >&2
  return 1
}

# nbd_uri SOCKET [EXPORT]: the NBD URI of a server on SOCKET.
nbd_uri ()
{
  echo "nbd+unix:///${2:-}?socket=$1"
}

# cleanup_servers: kill every server this test started.
cleanup_servers ()
{
  local f pid
  f="$(_pids_file)"
  test -f "$f" || return 0
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done < "$f"
  while read -r pid; do
    local i
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done < "$f"
  rm -f "$f"
}

teardown ()
{
  cleanup_servers
}

# expect_fail_cleanly PATTERN CMD...: CMD must exit non-zero (not by a
# signal, i.e. status < 128) and print something matching PATTERN
# (an extended regex).
expect_fail_cleanly ()
{
  local pattern="$1"; shift
  run "$@"
  if test "$status" -eq 0; then
    echo "expected failure, got success: $*" >&2
    echo "$output" >&2
    return 1
  fi
  if test "$status" -ge 128; then
    echo "killed by a signal (status $status): $*" >&2
    echo "$output" >&2
    return 1
  fi
  if ! grep -Eq -- "$pattern" <<<"$output"; then
    echo "output does not match /$pattern/: $*" >&2
    echo "$output" >&2
    return 1
  fi
}

# same_bytes A B: the two files are byte-for-byte identical.
same_bytes ()
{
  cmp "$1" "$2"
}

# normalize_map: read qemu-img map --output=json from stdin and print
# lines "start length data zero", adjacent equal ranges merged, so that
# maps from different sources compare with diff.
normalize_map ()
{
  python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    key = [e["data"], e["zero"]]
    if out and out[-1][2:] == key and out[-1][0] + out[-1][1] == e["start"]:
        out[-1][1] += e["length"]
    else:
        out.append([e["start"], e["length"]] + key)
for s, l, d, z in out:
    print(s, l, "data" if d else "-", "zero" if z else "-")
'
}

# map_of IMAGE_OR_URI [FORMAT]: qemu-img map, normalised.
map_of ()
{
  local src="$1" fmt="${2:-}"
  local args=(--output=json)
  test -n "$fmt" && args+=(-f "$fmt")
  qemu-img map "${args[@]}" "$src" | normalize_map
}

# ---- bytes in files ----
#
# FMT below is a Python struct code (B, H, I, Q, ...), little-endian
# (QED, add-cow) unless it starts with ">" (big-endian: QDB).  OFFSET
# and VALUE may be written in hex (0x...).

# poke FILE OFFSET FMT VALUE: overwrite one field of FILE.
poke ()
{
  python3 - "$@" <<'PY'
import struct, sys
f, off, fmt, val = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], int(sys.argv[4], 0)
if fmt[0] not in "<>":
    fmt = "<" + fmt
with open(f, "r+b") as fp:
    fp.seek(off)
    fp.write(struct.pack(fmt, val))
PY
}

# peek FILE OFFSET FMT: print one field of FILE, in decimal.
peek ()
{
  python3 - "$@" <<'PY'
import struct, sys
f, off, fmt = sys.argv[1], int(sys.argv[2], 0), sys.argv[3]
if fmt[0] not in "<>":
    fmt = "<" + fmt
with open(f, "rb") as fp:
    fp.seek(off)
    print(struct.unpack(fmt, fp.read(struct.calcsize(fmt)))[0])
PY
}

# poke_bytes FILE OFFSET STRING: overwrite with the bytes of STRING,
# in which \xNN escapes stand for any byte.
poke_bytes ()
{
  python3 - "$@" <<'PY'
import sys
f, off, s = sys.argv[1], int(sys.argv[2], 0), sys.argv[3]
with open(f, "r+b") as fp:
    fp.seek(off)
    fp.write(s.encode().decode("unicode_escape").encode("latin1"))
PY
}

# random_file FILE SIZE [SEED]: deterministic pseudo-random contents
# (the same SEED, default 1, gives the same bytes).
random_file ()
{
  python3 - "$1" "$2" "${3:-1}" <<'PY'
import random, sys
r = random.Random(int(sys.argv[3]))
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as fp:
    while n > 0:
        k = min(n, 1 << 20)
        fp.write(r.randbytes(k))
        n -= k
PY
}

# requires_filter NAME: skip unless nbdkit has its own filter NAME
# (delay, log, multi-conn, fua, ...).  Not for the filters this tree
# builds: those are never optional (see requires_file).
requires_filter ()
{
  requires nbdkit --filter="$1" null --version
}

# fingerprint FILE: FILE's bytes in one line ("absent" if none), to
# compare before and after.
fingerprint ()
{
  if test -e "$1"; then sha256sum < "$1"; else echo absent; fi
}

# refused FILE PATTERN COMMAND...: COMMAND fails cleanly (as for
# expect_fail_cleanly) with a message matching PATTERN, and FILE is
# left exactly as it was: a refused file is never written.
refused ()
{
  local file="$1" pattern="$2" before
  shift 2
  before="$(fingerprint "$file")"
  expect_fail_cleanly "$pattern" "$@" || return 1
  if test "$(fingerprint "$file")" != "$before"; then
    echo "$file changed although the command was refused: $*" >&2
    return 1
  fi
}
