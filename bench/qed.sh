#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# bench/qed.sh: fio (nbd engine) on a 1 GiB image against
#   ours:     nbdkit ./qed.so on a QED image
#   qemu-nbd: qemu-nbd -f qed --cache=writeback on a QED image
#   file:     nbdkit's file plugin on a raw file
# for sequential write/read 1 MiB qd8 and random write/read 4 KiB qd16,
# printing each figure and the ratios ours/qemu-nbd and ours/file from
# the same run.  Writes go to fresh images, so they are allocating
# writes for the QED servers.  Then the peak RSS of our plugin serving
# a 16 TiB sparse QED image under random reads.
#
# Not part of check.sh.  RUNTIME=seconds per pattern (default 10),
# REPEAT=runs per figure, the median is printed (default 3).

set -euo pipefail
cd "$(dirname "$0")/.."
top="$(pwd)"
. bench/bench-lib.sh
: "${REPEAT:=3}"

tmp="$(mktemp -d /var/tmp/qed-bench.XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
sock="$tmp/sock"
uri="nbd+unix:///?socket=$sock"

start_server ()
{
  local kind="$1"
  rm -f "$sock"
  case "$kind" in
    ours)
      nbdkit -f -U "$sock" --threads=16 "$top/qed.so" file="$tmp/ours.qed" & ;;
    qemu-nbd)
      qemu-nbd -t -f qed --cache=writeback --aio=threads -e 16 -k "$sock" \
        "$tmp/qemu.qed" & ;;
    file)
      nbdkit -f -U "$sock" --threads=16 file "$tmp/disk.raw" & ;;
  esac
  SERVER=$!
  wait_socket "$sock"
}

stop_server ()
{
  kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true
}

fresh_images ()
{
  rm -f "$tmp/ours.qed" "$tmp/qemu.qed" "$tmp/disk.raw"
  qemu-img create -q -f qed "$tmp/ours.qed" 1G
  qemu-img create -q -f qed "$tmp/qemu.qed" 1G
  truncate -s 1G "$tmp/disk.raw"
}

declare -A result
patterns=("write 1M 8" "read 1M 8" "randwrite 4k 16" "randread 4k 16")

for p in "${patterns[@]}"; do
  set -- $p
  declare -A runs=()
  for rep in $(seq 1 "$REPEAT"); do
    # Writes start from fresh images (allocating writes for QED); reads
    # read a disk that a sequential write filled.
    fresh_images
    for kind in ours qemu-nbd file; do
      start_server "$kind"
      case "$1" in
        read|randread) fio_run "$uri" write 1M 8 >/dev/null ;;
      esac
      runs[$kind]+="$(fio_run "$uri" "$1" "$2" "$3") "
      stop_server
    done
  done
  for kind in ours qemu-nbd file; do
    result["$1,$kind"]=$(median ${runs[$kind]})
  done
  unset runs
done

printf '\nmedian of %d runs\n%-16s %12s %12s %12s %10s %10s\n' "$REPEAT" \
  pattern "ours MiB/s" "qemu-nbd" "file" "ours/qnbd" "ours/file"
for p in "${patterns[@]}"; do
  set -- $p
  o=${result["$1,ours"]} q=${result["$1,qemu-nbd"]} f=${result["$1,file"]}
  printf '%-16s %12s %12s %12s %10s %10s\n' "$1 $2 qd$3" "$o" "$q" "$f" \
    "$(ratio "$o" "$q")" "$(ratio "$o" "$f")"
done

# Peak RSS on a 16 TiB sparse image under random reads.
qemu-img create -q -f qed "$tmp/huge.qed" 16T
qemu-io -f qed -c "write -P 1 0 1M" -c "write -P 2 8T 1M" \
  -c "write -P 3 $(( (16 << 40) - (1 << 20) )) 1M" "$tmp/huge.qed" >/dev/null
rm -f "$sock"
nbdkit -f -U "$sock" --threads=16 "$top/qed.so" file="$tmp/huge.qed" &
SERVER=$!
wait_socket "$sock"
fio --name=rss --ioengine=nbd --uri="$uri" --rw=randread --bs=4k \
    --iodepth=16 --size=16T --runtime="$RUNTIME" --time_based \
    --output-format=terse >/dev/null 2>&1 || true
rss=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
stop_server
echo
echo "peak RSS serving a 16 TiB sparse QED image under random reads: $((rss / 1024)) MiB (target <= 64 MiB)"
