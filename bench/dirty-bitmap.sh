#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Benchmark of nbdkit-dirty-bitmap-filter: fio (nbd engine) writes
# through the filter over the file plugin, versus the file plugin
# alone.  Prints throughput and the ratio filter / plain for:
#   - sequential 1M writes over the whole disk, first touch (every
#     granule is clean when written: each write waits for a bitmap sync);
#   - random 4K writes, first touch (fresh 4K-granularity bitmap);
#   - random 4K writes and sequential 1M writes once every granule is
#     dirty (the steady state: only an in-memory bit test).
# Not run by "make check".  Usage (from the build tree):
#   bench/dirty-bitmap.sh [SIZE] [SECONDS]     (default 1G, 5)
# REPS=N repetitions (default 3); each figure is the median of the
# per-repetition ratios to plain runs made from the same state.
# TRACKING=strict|lazy|both (default both): the filter's
# dirty-bitmap-tracking= mode(s) to measure, each against the same
# plain runs.  Every measured run starts from the same state: the disk
# file written in full and synced (page cache writeback idle), so the
# plain baseline is not throttled by an earlier pass's writeback.  For
# the random first-touch runs the fdatasyncs of the QDB file per write
# are counted from the filter's statistics (nbdkit -v).
# Environment: DIRTY_BITMAP_FILTER (default ./dirty-bitmap.so), QAD_IMG
# (default ./tools/qad-img), WORKDIR.

set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
size="${1:-1G}"
secs="${2:-5}"
filter="${DIRTY_BITMAP_FILTER:-$(pwd)/dirty-bitmap.so}"
qad_img="${QAD_IMG:-$(pwd)/tools/qad-img}"
work="${WORKDIR:-$(mktemp -d -p /var/tmp)}"
trap 'cleanup' EXIT
pids=()
cleanup ()
{
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  test -n "${WORKDIR:-}" || rm -rf "$work"
}

test -f "$filter" || { echo "$0: filter not found: $filter" >&2; exit 1; }
cd "$work"
echo "work dir $work, disk $size, $secs s per random run"
# A fully allocated disk, so the plugin writes in place.
fallocate -l "$size" disk.raw 2>/dev/null || truncate -s "$size" disk.raw
dd if=/dev/zero of=disk.raw bs=1M count=$(( $(stat -c %s disk.raw) >> 20 )) \
  conv=notrunc status=none
sync

serve ()                        # serve NAME ARGS...
{
  local name="$1"; shift
  rm -f "$name.sock" "$name.pid"
  sync                          # same starting state for every run
  nbdkit -v -U "$work/$name.sock" -P "$work/$name.pid" "$@" 2>"$name.log"
  wait_server "$work/$name.pid" "$work/$name.sock"
  pids+=("$(cat "$name.pid")")
}
stop ()                         # stop NAME [SIGNAL]
{
  local p; p="$(cat "$1.pid")"
  kill -"${2:-TERM}" "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
}

# fio_bw NAME RW BS [time]: run fio against server NAME, print KiB/s
# (and leave the number of writes in NAME.ios).
fio_bw ()
{
  local name="$1" rw="$2" bs="$3" timed="${4:-}"
  sync
  local args=(--name=job --ioengine=nbd --uri="nbd+unix:///?socket=$work/$name.sock"
              --rw="$rw" --bs="$bs" --iodepth=16 --numjobs=1
              --direct=0 --output-format=json)
  if test -n "$timed"; then
    args+=(--time_based --runtime="$secs" --size="$size")
  else
    args+=(--size="$size")
  fi
  fio "${args[@]}" 2>/dev/null |
    python3 -c '
import json, sys
s = sys.stdin.read()               # fio prints a line before the JSON
w = json.loads(s[s.index("{"):])["jobs"][0]["write"]
open(sys.argv[1], "w").write("%d\n" % w["total_ios"])
print(w["bw"])' "$name.ios"
}

# syncs NAME: fdatasyncs of the QDB file from a stopped server's log.
syncs ()
{
  sed -n 's/.*requests needed new bits, \([0-9]*\) commits.* \([0-9]*\) checkpoints.*/\1 \2/p' \
    "$1.log" | awk '{ print $1 + $2 }'
}

# Every figure is the median over REPS of a per-repetition ratio, each
# filtered run divided by a plain run that does exactly the same
# thing from the same state: a fresh server on the synced disk (first
# touch), or the same server after the same passes (already dirty).
# Plain and filtered runs alternate, plain first in odd repetitions
# and last in even ones, so drift in the machine's speed cancels.
#
# run_set NAME SERVER-ARGS...: on server NAME (fresh) a sequential
# pass, a second one, then timed random writes; then on a fresh server
# (4K granules for the filter) timed random writes.  Appends to
# R_SEQ_FIRST[NAME] etc., and to SYNCS[NAME] the QDB fdatasyncs per
# random first-touch write.
declare -A R_SEQ_FIRST R_SEQ_DIRTY R_RAND_FIRST R_RAND_DIRTY SYNCS
run_set ()
{
  local name="$1"; shift
  local gran=()
  test "$name" = plain || gran=(dirty-bitmap-granularity=4K)
  rm -f "$name.qdb"
  serve "$name" "$@"
  R_SEQ_FIRST[$name]+=" $(fio_bw "$name" write 1M)"
  R_SEQ_DIRTY[$name]+=" $(fio_bw "$name" write 1M)"
  R_RAND_DIRTY[$name]+=" $(fio_bw "$name" randwrite 4K timed)"
  stop "$name"
  rm -f "$name.qdb"
  serve "$name" "$@" "${gran[@]}"
  R_RAND_FIRST[$name]+=" $(fio_bw "$name" randwrite 4K timed)"
  local ios; ios=$(cat "$name.ios")
  stop "$name"
  test "$name" = plain ||
    SYNCS[$name]+=" $(ratio "$(syncs "$name")" "$(( ios > 0 ? ios : 1 ))" 4)"
}

# Warm up: one plain pass over the disk.
serve warm file disk.raw
fio_bw warm write 1M >/dev/null
stop warm

reps="${REPS:-3}"
modes="${TRACKING:-both}"
test "$modes" = both && modes="strict lazy"
sets=(plain)
for m in $modes; do sets+=("$m"); done
for rep in $(seq 1 "$reps"); do
  order=("${sets[@]}")
  if (( rep % 2 == 0 )); then
    order=("${sets[@]:1}" plain)
  fi
  for s in "${order[@]}"; do
    if test "$s" = plain; then
      run_set plain file disk.raw
    else
      run_set "$s" --filter="$filter" file disk.raw dirty-bitmap="$s.qdb" \
        dirty-bitmap-tracking="$s"
    fi
  done
done

# ratios_of METRIC MODE: the per-repetition ratios MODE / plain.
ratios_of ()
{
  local -n arr="$1"
  local -a f p
  read -ra f <<<"${arr[$2]}"
  read -ra p <<<"${arr[plain]}"
  local i
  for i in "${!f[@]}"; do ratio "${f[$i]}" "${p[$i]}" 3; done
}

report ()                       # report LABEL METRIC MODE
{
  local -n runs="$2"
  local -a f p
  read -ra f <<<"${runs[$3]}"
  read -ra p <<<"${runs[plain]}"
  # shellcheck disable=SC2046
  printf '%-44s plain %8s  filter %8s KiB/s   ratio %s  (runs: %s)\n' \
    "[$3] $1" "$(median "${p[@]}")" "$(median "${f[@]}")" \
    "$(MEDIAN_DECIMALS=3 median $(ratios_of "$2" "$3"))" \
    "$(ratios_of "$2" "$3" | tr '\n' ' ' | sed 's/ $//')"
}

echo
echo "median of $reps paired runs (ratio: median of the per-run ratios):"
for m in $modes; do
  report "seq 1M qd16, first touch (64K gran.)" R_SEQ_FIRST "$m"
  report "seq 1M qd16, already dirty" R_SEQ_DIRTY "$m"
  report "rand 4K qd16, first touch (4K gran.)" R_RAND_FIRST "$m"
  report "rand 4K qd16, already dirty (64K gran.)" R_RAND_DIRTY "$m"
  # shellcheck disable=SC2086
  printf '%-44s %s\n' "[$m] QDB fdatasyncs per random 4K write" \
    "$(MEDIAN_DECIMALS=4 median ${SYNCS[$m]})"
done

# Precision lost by an unclean shutdown.  The same fixed workload (fio
# with a fixed seed: 64M of 4K writes, random or sequential, no flush)
# runs under strict and under lazy tracking with no checkpoint due;
# the server is then killed with SIGKILL and the dirty 4K granules
# counted.  Strict tracking records exactly the granules written, so
# what lazy tracking has beyond it is what its region map (default
# region size) adds after a crash.
dirty_after_kill ()             # dirty_after_kill MODE RW
{
  rm -f p.qdb
  serve p --filter="$filter" file disk.raw dirty-bitmap=p.qdb \
    dirty-bitmap-granularity=4K dirty-bitmap-tracking="$1" \
    dirty-bitmap-checkpoint-interval=3600
  fio --name=job --ioengine=nbd --uri="nbd+unix:///?socket=$work/p.sock" \
    --rw="$2" --bs=4K --iodepth=16 --size="$size" --io_size=64M \
    --randseed=1 --randrepeat=1 --output=/dev/null
  stop p KILL
  "$qad_img" info --output=json p.qdb |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["bitmaps"][0]["dirty-granules"])'
}
if test -x "$qad_img"; then
  echo
  echo "precision lost by kill -9 under lazy tracking (4K granules, 64M written):"
  for rw in randwrite write; do
    strict=$(dirty_after_kill strict "$rw")
    lazy=$(dirty_after_kill lazy "$rw")
    printf '%-42s strict %7s   lazy %7s   extra %7s granules\n' \
      "$rw 4K, 16384 writes" "$strict" "$lazy" "$((lazy - strict))"
  done
else
  echo "$0: qad-img not found (set QAD_IMG): precision not measured" >&2
fi
