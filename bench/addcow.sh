#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# bench/addcow.sh: fio (nbd engine) through the add-cow filter over
# nbdkit's file plugin, versus the file plugin alone on a raw file,
# on a 1 GiB disk (SIZE=...), for random write/read 4 KiB qd16 and
# sequential write/read 1 MiB qd8:
#   first touch:  a fresh sidecar over a 1 GiB backing file, so every
#                 first write to a cluster is a copy-up;
#   allocated:    every cluster but the last already in the image (the
#                 bitmap is consulted on every request);
#   all:          every cluster in the image (ALL_ALLOCATED: pass-through).
# Prints MiB/s for each and the ratio filter/file, the file plugin
# running on a disk.raw prepared the same way (see run_file).  Page-cache
# writeback makes single runs noisy (+-30% on a small VM): use a
# RUNTIME of 20 or more for numbers worth quoting.  Target: >= 0.8x the
# file plugin once allocated.
#
# Not part of check.sh.  RUNTIME=seconds per pattern (default 10).

set -euo pipefail
cd "$(dirname "$0")/.."
top="$(pwd)"
. bench/bench-lib.sh
: "${SIZE:=1G}"
# Not nbdsh: that is "python3 -m nbd" with whatever python3 is first
# on PATH, which may lack the module.  Fails here, saying so, if no
# python3 has it.
nbd_py="$(nbd_python)"

tmp="$(mktemp -d /var/tmp/addcow-bench.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
sock="$tmp/sock"
uri="nbd+unix:///?socket=$sock"
SERVER=

# fio_mibs URI RW BS IODEPTH SIZE: MiB/s.  (fio's nbd engine prints
# "fio: connected to NBD server" on stdout before the JSON: skip it.)
fio_mibs ()
{
  fio --name=bench --ioengine=nbd --uri="$1" --rw="$2" --bs="$3" \
      --iodepth="$4" --size="$5" --runtime="$RUNTIME" --time_based=0 \
      --numjobs=1 --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' |
    python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
print("%.1f" % (bw / 1048576))'
}

start ()
{
  rm -f "$sock"
  nbdkit -f -U "$sock" --threads=16 "$@" &
  SERVER=$!
  wait_socket "$sock"
}

stop ()
{
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
}

# The backing file: real data everywhere (copy-up reads something).
head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$tmp/base.img"

# setup_state KIND: fresh | allocated | all
setup_state ()
{
  rm -f "$tmp/disk.add-cow"
  truncate -s 0 "$tmp/disk.raw"
  truncate -s "$SIZE" "$tmp/disk.raw"
  case "$1" in
    fresh) ;;
    allocated|all)
      start --filter="$top/addcow.so" file "$tmp/disk.raw" \
        addcow="$tmp/disk.add-cow" addcow-backing="$tmp/base.img"
      if [ "$1" = all ]; then
        nbdcopy --no-extents "$tmp/base.img" "$uri"
      else
        # Everything but the last cluster.
        local sz; sz=$(numfmt --from=iec "$SIZE")
        "$nbd_py" -m nbd -u "$uri" -c "
import os
fd = os.open('$tmp/base.img', os.O_RDONLY)
off, end = 0, $sz - 65536
while off < end:
    n = min(1 << 24, end - off)
    h.pwrite(os.pread(fd, n, off), off)
    off += n
h.flush()"
      fi
      stop ;;
  esac
}

# Baselines: the file plugin alone, on the same disk.raw prepared the
# same way (the file's allocation and page-cache state matter more
# than anything the filter does).  For "fresh", the baseline is what
# one would do without add-cow: a full raw copy of the backing.
run_file ()
{
  case "$4" in
    fresh) cp --sparse=never "$tmp/base.img" "$tmp/disk.raw" ;;
    *) setup_state "$4" ;;
  esac
  sync
  start file "$tmp/disk.raw"
  fio_mibs "$uri" "$1" "$2" "$3" "$SIZE"
  stop
}

run_addcow ()
{
  setup_state "$4"
  sync
  start --filter="$top/addcow.so" file "$tmp/disk.raw" \
    addcow="$tmp/disk.add-cow" addcow-backing="$tmp/base.img"
  fio_mibs "$uri" "$1" "$2" "$3" "$SIZE"
  stop
}

printf '%-24s %-12s %10s %10s %7s\n' pattern state file addcow ratio
IFS=';' read -r -a pats <<< "${PATTERNS:-randwrite 4k 16;randread 4k 16;write 1M 8;read 1M 8}"
for p in "${pats[@]}"; do
  set -- $p
  for state in fresh allocated all; do
    f=$(run_file "$1" "$2" "$3" "$state")
    a=$(run_addcow "$1" "$2" "$3" "$state")
    printf '%-24s %-12s %10s %10s %7s\n' "$1 bs=$2 qd=$3" "$state" \
      "$f" "$a" "$(ratio "$a" "$f")"
  done
done
