#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Live incremental backup with nbdkit-dirty-bitmap-filter, end to end,
# while clients keep writing:
#
#   1. serve a disk (an ext4 filesystem in its first 192M) through the
#      filter with a control socket; bitmap "b0" tracks from the start;
#   2. clients write throughout: a writer rewrites random blocks of the
#      last 56M all along, and guestfish writes files into ext4;
#   3. full backup, point in time: "--add b1 --freeze b0", copy the
#      whole view dirty-bitmap:b0, "--release b0 --remove b0";
#   4. two incremental periods (after guestfish is done, then with the
#      writer alone): "--add b<n+1> --freeze b<n>", copy only the dirty
#      extents of dirty-bitmap:b<n> into the backup, check that the
#      backup equals the disk as of that freeze (the whole frozen view,
#      read back), "--release b<n> --remove b<n>";
#   5. the restored backup's filesystem is clean and holds the files.
#
# Usage: incremental-backup.sh [WORKDIR]
# Environment: DIRTY_BITMAP_FILTER (default: the installed
# "dirty-bitmap"), QAD_IMG (default: qad-img), GRANULARITY (64K),
# NBD_PYTHON (a python3 with libnbd's nbd module; default python3).
# Needs nbdkit, nbdcopy, python3-libnbd, guestfish, mkfs.ext4,
# e2fsck, debugfs.  It is also run as a test
# (test-dirty-bitmap-backup.bats).

set -euo pipefail

filter="${DIRTY_BITMAP_FILTER:-dirty-bitmap}"
qad_img="${QAD_IMG:-qad-img}"
gran="${GRANULARITY:-64K}"
export LIBGUESTFS_BACKEND="${LIBGUESTFS_BACKEND:-direct}"
export PYENV_VERSION=system
python="${NBD_PYTHON:-python3}"
"$python" -c 'import nbd' 2>/dev/null || {
  echo "$0: $python has no nbd module (apt-get install python3-libnbd," \
       "or set NBD_PYTHON to a python3 that has it)" >&2
  exit 1
}

if test -n "${1:-}"; then
  work="$1"; mkdir -p "$work"
else
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
cd "$work"
sock="$work/sock"
ctl="$work/ctl"
uri="nbd+unix:///?socket=$sock"
view () { echo "nbd+unix:///dirty-bitmap:$1?socket=$sock"; }

server_pid= writer_pid= gf_pid=
cleanup ()
{
  local p
  for p in $writer_pid $gf_pid $server_pid; do kill "$p" 2>/dev/null || true; done
}
trap cleanup ERR

# copy_dirty NAME: copy the extents that the view dirty-bitmap:NAME
# reports as data into backup.raw, reading them from that (frozen)
# view; print the byte count.
copy_dirty ()
{
  "$python" - "$(view "$1")" <<'PY'
import sys
import nbd
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(sys.argv[1])
size = h.get_size()
extents = []
def cb(meta, off, ents, err):
    for i in range(0, len(ents), 2):
        extents.append((off, ents[i], ents[i + 1]))
        off += ents[i]
    return 0
pos = 0
while pos < size:
    n = len(extents)
    h.block_status(size - pos, pos, cb)
    pos = extents[-1][0] + extents[-1][1]
copied = 0
with open("backup.raw", "r+b") as out:
    for off, left, flags in extents:
        if flags & 1:               # HOLE: clean granules
            continue
        while left > 0:
            n = min(left, 32 << 20)
            out.seek(off)
            out.write(h.pread(n, off))
            off += n; left -= n; copied += n
h.shutdown()
print(copied)
PY
}

# period N: end period N (bitmap bN), copy its increment, verify.
period ()
{
  local n="$1" copied
  "$qad_img" bitmap --connect="$ctl" --add "b$((n + 1))" --freeze "b$n"
  copied=$(copy_dirty "b$n")
  # The backup must equal the disk as of the freeze: the whole frozen
  # view, read while the writer goes on.
  nbdcopy "$(view "b$n")" frozen.raw
  cmp backup.raw frozen.raw
  "$qad_img" bitmap --connect="$ctl" --release "b$n" --remove "b$n"
  echo "increment $n: copied $copied bytes; backup equals the disk at the freeze"
}

echo "== 1. a 256M disk, ext4 in its first 192M, served through the filter"
truncate -s 256M disk.raw
mkfs.ext4 -q -F disk.raw 192M
rm -f disk.qdb "$sock" "$ctl" pid
nbdkit -U "$sock" -P pid --filter="$filter" file disk.raw \
  dirty-bitmap=disk.qdb dirty-bitmap-name=b0 \
  dirty-bitmap-granularity="$gran" dirty-bitmap-control="$ctl"
# nbdkit's parent returns before its child writes the pidfile.
for i in $(seq 1 300); do test -s pid && break; sleep 0.1; done
test -s pid || { echo "$0: nbdkit wrote no pidfile within 30 s" >&2; exit 1; }
server_pid="$(cat pid)"
nbdinfo --size "$uri" >/dev/null   # the QDB file is written

echo "== 2. clients write throughout"
"$python" - "$uri" <<'PY' &
import os, random, sys, time
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
r = random.Random(1)
try:
    while True:
        h.pwrite(os.urandom(4096), r.randrange(200 << 20, 256 << 20, 4096))
        time.sleep(0.001)
except Exception:
    pass
PY
writer_pid=$!
timeout 300 guestfish --format=raw -a "nbd://?socket=$sock" > gf.log 2>&1 <<'GF' &
run
mount /dev/sda /
mkdir /docs
write /docs/hello.txt "hello, live incremental backup\n"
fill 0x55 3000000 /docs/big.bin
fill-pattern "0123456789abcdef" 500000 /docs/pattern.bin
write-append /docs/hello.txt "second line\n"
umount-all
GF
gf_pid=$!

echo "== 3. full backup of the disk as of a freeze"
"$qad_img" bitmap --connect="$ctl" --add b1 --freeze b0
nbdcopy "$(view b0)" backup.raw
"$qad_img" bitmap --connect="$ctl" --release b0 --remove b0
"$qad_img" info --connect="$ctl"

echo "== 4. incremental periods while the writer goes on"
wait "$gf_pid" || { cat gf.log; exit 1; }
gf_pid=
period 1
sleep 1
period 2
kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true
writer_pid=
kill "$server_pid"
while kill -0 "$server_pid" 2>/dev/null; do sleep 0.1; done
server_pid=

echo "== 5. the backup's filesystem"
e2fsck -f -n backup.raw >/dev/null
debugfs -R "cat /docs/hello.txt" backup.raw 2>/dev/null | tee hello.txt
grep -q "second line" hello.txt
echo "OK"
