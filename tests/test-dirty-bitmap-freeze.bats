#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Point-in-time view of a frozen bitmap (--freeze / --release): writers
# keep writing while the dirty extents of dirty-bitmap:b1 are copied;
# the copy must be the disk as of the freeze, which the workload
# reconstructs from its own write log (every writer's sequential writes
# cut at one point during the command).  Over the file plugin and under
# the add-cow filter; then a kill -9 during a freeze, the scratch names
# a power cut may leave (removed at restart), and the IN_USE rule.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

L () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-live.py" "$@"; }

pit ()
{
  run L pit "$(nbd_uri sock)" "$(nbd_uri sock dirty-bitmap:b1)" "$PWD/ctl" \
    "$QAD_IMG" initial.raw backup.raw 4
  echo "$output"
  [ "$status" -eq 0 ]
  echo "# $output" >&3
  # The scratch file is gone after the release (it was never linked).
  [ -z "$(ls -A scratch)" ]
}

@test "dirty-bitmap freeze: point-in-time copy while writers write (file plugin)" {
  mkdir scratch
  head -c 32M /dev/urandom > disk.raw
  cp disk.raw initial.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-granularity=16K dirty-bitmap-control="$PWD/ctl" \
    dirty-bitmap-scratch-dir=scratch
  pit
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
}

@test "dirty-bitmap freeze: point-in-time copy while writers write (under add-cow)" {
  requires_file "$ADDCOW_FILTER"
  mkdir scratch
  head -c 32M /dev/urandom > base.img
  truncate -s 32M disk.raw
  cp base.img initial.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" --filter="$ADDCOW_FILTER" \
    file disk.raw addcow=disk.add-cow addcow-backing=base.img \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  pit
  stop_nbdkit sock
}

@test "dirty-bitmap freeze: kill -9 during a freeze leaves b1 disabled, no scratch" {
  mkdir scratch
  truncate -s 8M disk.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
    dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"1" * 65536, 0)'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 --freeze b1
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"2" * 65536, 0)'
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" \
    -c 'assert h.pread(65536, 0) == b"1" * 65536'
  run "$QAD_IMG" info --connect="$PWD/ctl"
  [[ "$output" == *"b1: frozen"* ]]
  # The view is read-only.
  run nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" -c 'h.pwrite(b"x", 0)'
  [ "$status" -ne 0 ]
  stop_nbdkit sock KILL
  [ -z "$(ls -A scratch)" ]
  run "$QAD_IMG" info disk.qdb
  echo "$output"
  [[ "$output" == *"b1: disabled, granularity 65536, disk size 8388608, 1 dirty granules"* ]]
  [[ "$output" == *"b2: enabled, granularity 65536, disk size 8388608, 1 dirty granules"* ]]
  # Restart: b1 is an ordinary disabled bitmap, its view reads today's disk.
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-control="$PWD/ctl"
  nbdsh -u "$(nbd_uri sock dirty-bitmap:b1)" \
    -c 'assert h.pread(65536, 0) == b"2" * 65536'
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --freeze b1
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b1 --remove b1
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
}

# scratch_prefix QDB: the fixed part of QDB's scratch file names, by
# the rule of the man page (common/qdb/qdb-scratch.h): ".qdb-freeze-",
# the base name, "-", the 64-bit FNV-1a of the resolved path in hex, "-".
scratch_prefix ()
{
  python3 -c '
import os, sys
p = sys.argv[1]
h = 0xcbf29ce484222325
for b in os.path.realpath(p).encode():
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
print(".qdb-freeze-%s-%016x-" % (os.path.basename(p)[:200], h))' "$1"
}

@test "dirty-bitmap freeze: a restart removes the scratch names a crash left, only its own" {
  mkdir scratch other
  truncate -s 8M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=b1
  p="$(scratch_prefix "$PWD/disk.qdb")"
  q="$(scratch_prefix "$PWD/other/disk.qdb")"
  # What a power cut between mkstemp and the synced unlink leaves.
  echo data > "scratch/${p}Ab3xY9"
  echo data > "${p}Zz0000"
  # Not ours: other lengths, another QDB file, older names, a directory.
  touch "scratch/${p}Ab3xY99" "scratch/${p}Ab3xY" "scratch/${q}Ab3xY9" \
    scratch/.qdb-freeze-b1-Ab3xY9 scratch/keep
  mkdir "scratch/${p}dir123"
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-control="$PWD/ctl" \
    dirty-bitmap-scratch-dir=scratch
  ls -A scratch
  [ ! -e "scratch/${p}Ab3xY9" ]
  [ -e "${p}Zz0000" ]             # not in the scratch directory
  [ "$(ls -A scratch | wc -l)" -eq 6 ]
  # A freeze leaves no name, even for a moment (O_TMPFILE on this file
  # system), and the scratch directory is as it was after release.
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 --freeze b1
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"2" * 65536, 0)'
  pid="$(cat sock.pid)"
  ls -l /proc/$pid/fd | grep -F "$PWD/scratch/"
  [ -z "$(ls -l /proc/$pid/fd | grep -F "$PWD/scratch/.qdb-freeze-")" ]
  [ "$(ls -A scratch | wc -l)" -eq 6 ]
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b1
  stop_nbdkit sock
  # The default scratch directory is the QDB file's.
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb"
  [ ! -e "${p}Zz0000" ]
  [ -e disk.qdb ]
  [ -e disk.raw ]
  stop_nbdkit sock
}

@test "dirty-bitmap freeze: an IN_USE bitmap cannot be frozen" {
  truncate -s 8M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=b1 --bitmap=b2
  # b2: IN_USE and disabled (flags at byte 24 of the second directory
  # entry; entries of two-letter names are 48 bytes, from 65536).  An
  # enabled IN_USE bitmap is refused at start; a disabled one is served.
  python3 -c '
with open("disk.qdb", "r+b") as f:
    f.seek(65536 + 48 + 24); f.write(b"\x00\x02")'
  run "$QAD_IMG" info disk.qdb
  [[ "$output" == *"b2: disabled"*"IN USE"* ]]
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-control="$PWD/ctl"
  expect_fail_cleanly "^qad-img: .*$PWD/disk.qdb: bitmap \"b2\" has the IN_USE flag \(inconsistent\): refusing to freeze it" \
    "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b3 --freeze b2
  run "$QAD_IMG" info --connect="$PWD/ctl"
  echo "$output"
  [[ "$output" == *"b2: disabled"* ]]
  [[ "$output" != *"b3"* ]]
  # What the rule allows: reset it to all dirty, then freeze it.
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --dirty-all b2 --freeze b2
  run "$QAD_IMG" info --connect="$PWD/ctl"
  [[ "$output" == *"b2: frozen"* ]]
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b2
  stop_nbdkit sock
  run "$QAD_IMG" info disk.qdb
  echo "$output"
  [[ "$output" != *"IN USE"* ]]
}

# copy_view NAME OUT: write every extent of dirty-bitmap:NAME that is not
# a hole (what a backup copies) into OUT at the same offset.
copy_view ()
{
  python3 -c '
import nbd, sys
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(sys.argv[1])
size, pos, ext = h.get_size(), 0, []
def cb(meta, off, ents, err):
    for i in range(0, len(ents), 2):
        ext.append((off, ents[i], ents[i + 1]))
        off += ents[i]
    return 0
while pos < size:
    h.block_status(size - pos, pos, cb)
    pos = ext[-1][0] + ext[-1][1]
with open(sys.argv[2], "r+b") as f:
    for off, ln, flags in ext:
        if not flags & 1:
            f.seek(off)
            f.write(h.pread(ln, off))
h.shutdown()' "$(nbd_uri sock "dirty-bitmap:$1")" "$2"
}

# W GRANULE BYTE: write 64K of BYTE at granule GRANULE (of 64K).
W ()
{
  nbdsh -u "$(nbd_uri sock)" -c "h.pwrite(b'$2' * 65536, $1 * 65536)"
}

@test "dirty-bitmap freeze: a backup cut by a crash starts over, as the man page says" {
  mkdir scratch
  truncate -s 8M disk.raw
  serve_freeze ()
  {
    start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
      dirty-bitmap="$PWD/disk.qdb" dirty-bitmap-name=b1 \
      dirty-bitmap-control="$PWD/ctl" dirty-bitmap-scratch-dir=scratch
  }
  serve_freeze
  cp disk.raw backup.raw                # the full backup, b1 clean
  W 0 A
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b2 --freeze b1
  W 1 B
  W 0 C
  stop_nbdkit sock KILL                 # the backup of b1 never happened
  serve_freeze
  W 2 D
  # Start over: b1 takes b2's changes, b2 starts afresh, b1 is frozen,
  # all in one command.
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --merge b2 --into b1 --clear b2 \
    --freeze b1
  cp disk.raw at-freeze.raw             # nobody writes: the disk now
  W 3 E
  W 1 F
  copy_view b1 backup.raw
  cmp backup.raw at-freeze.raw
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b1 --remove b1
  # The next period, from b2, brings the backup to today's disk.
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --add b3 --freeze b2
  copy_view b2 backup.raw
  "$QAD_IMG" bitmap --connect="$PWD/ctl" --release b2 --remove b2
  stop_nbdkit sock
  cmp backup.raw disk.raw
}
