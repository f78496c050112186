#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Incremental backup with nbdkit-dirty-bitmap-filter, end to end:
#
#   1. serve a disk (an ext4 filesystem) through the filter, which
#      creates disk.qdb with one bitmap, "backup";
#   2. take a full backup with nbdcopy;
#   3. a client (guestfish, booting a small appliance) writes files;
#   4. read the dirty map through the export "dirty-bitmap:backup"
#      (nbdinfo --map) and copy only the dirty extents into the backup;
#   5. stop the server, clear the bitmap for the next period (qad-img);
#   6. check that the backup equals the disk byte for byte, and that
#      only the dirty granules were copied.
#   7. a second, tiny period (one write through nbdsh) shows that the
#      cleared bitmap records only what changed since.
#
# Usage: incremental-backup.sh [WORKDIR]
# Environment: DIRTY_BITMAP_FILTER (default: the installed
# "dirty-bitmap"), QAD_IMG (default: qad-img), GRANULARITY (64K).
# Needs nbdkit, nbdinfo, nbdcopy, nbdsh/python3-libnbd, guestfish,
# mkfs.ext4.  It is also run as a test (test-dirty-bitmap-backup.bats).

set -euo pipefail

filter="${DIRTY_BITMAP_FILTER:-dirty-bitmap}"
qad_img="${QAD_IMG:-qad-img}"
gran="${GRANULARITY:-64K}"
export LIBGUESTFS_BACKEND="${LIBGUESTFS_BACKEND:-direct}"
export PYENV_VERSION=system

if test -n "${1:-}"; then
  work="$1"; mkdir -p "$work"
else
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
cd "$work"
sock="$work/sock"
uri="nbd+unix:///?socket=$sock"
view="nbd+unix:///dirty-bitmap:backup?socket=$sock"

server_pid=
start_server ()
{
  rm -f "$sock" pid
  nbdkit -U "$sock" -P pid --filter="$filter" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=backup \
    dirty-bitmap-granularity="$gran"
  server_pid="$(cat pid)"
}
stop_server ()
{
  kill "$server_pid"
  while kill -0 "$server_pid" 2>/dev/null; do sleep 0.1; done
  server_pid=
}
trap 'test -z "$server_pid" || kill "$server_pid" 2>/dev/null || true' ERR

# copy_dirty: copy the extents that the dirty-bitmap:backup view
# reports as data from the disk into backup.raw; print the byte count.
copy_dirty ()
{
  nbdinfo --map --json "$view" > map.json
  python3 - "$uri" <<'PY'
import json, sys
import nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
copied = 0
with open("backup.raw", "r+b") as out:
    for e in json.load(open("map.json")):
        if e["type"] != 0:          # HOLE: clean granules
            continue
        off, left = e["offset"], e["length"]
        while left > 0:
            n = min(left, 32 << 20)
            out.seek(off)
            out.write(h.pread(n, off))
            off += n; left -= n; copied += n
h.shutdown()
print(copied)
PY
}

echo "== 1. a 256M disk with an ext4 filesystem, served through the filter"
truncate -s 256M disk.raw
mkfs.ext4 -q -F disk.raw
rm -f disk.qdb
start_server

echo "== 2. full backup"
nbdcopy "$uri" backup.raw
ls -l backup.raw

echo "== 3. the client writes files (guestfish)"
timeout 300 guestfish --format=raw -a "nbd://?socket=$sock" <<'GF'
run
mount /dev/sda /
mkdir /docs
write /docs/hello.txt "hello, incremental backup\n"
fill 0x55 3000000 /docs/big.bin
fill-pattern "0123456789abcdef" 500000 /docs/pattern.bin
write-append /docs/hello.txt "second line\n"
umount-all
GF

echo "== 4. copy the dirty extents into the backup"
dirty_bytes=$(nbdinfo --map --json "$view" |
  python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["type"] == 0))')
copied=$(copy_dirty)
echo "dirty bytes per the map: $dirty_bytes; bytes copied: $copied"

echo "== 5. stop the server, clear the bitmap"
stop_server
"$qad_img" info disk.qdb
info_dirty=$("$qad_img" info disk.qdb --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["bitmaps"][0]["dirty-bytes"])')
"$qad_img" bitmap disk.qdb --clear backup

echo "== 6. verify"
cmp disk.raw backup.raw
size=$(stat -c %s disk.raw)
test "$copied" -eq "$dirty_bytes"
test "$copied" -eq "$info_dirty"
test "$copied" -gt 3000000            # at least the file contents
test "$copied" -lt $((size / 4))      # but nowhere near the whole disk
echo "backup equals disk; copied $copied of $size bytes"

echo "== 7. a second period: one byte written"
start_server
nbdsh -u "$uri" -c 'h.pwrite(b"!", 200 << 20)'
copied2=$(copy_dirty)
stop_server
cmp disk.raw backup.raw
g=$(python3 -c "
s = '$gran'.upper(); m = {'K': 1 << 10, 'M': 1 << 20}
print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))")
test "$copied2" -eq "$g"
echo "second increment: copied $copied2 bytes (one granule); backup equals disk"
echo "OK"
