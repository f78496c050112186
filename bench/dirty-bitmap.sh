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
# REPS=N repetitions (default 3); the median is reported.
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

ratio () { python3 -c "print('%.3f' % ($1 / $2))"; }
report ()                       # report LABEL PLAIN FILTERED
{
  printf '%-42s plain %9s KiB/s   filter %9s KiB/s   ratio %s\n' \
    "$1" "$2" "$3" "$(ratio "$3" "$2")"
}

median () { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

# Warm up: one plain pass over the disk.
serve plain file disk.raw
fio_bw plain write 1M >/dev/null
stop plain

reps="${REPS:-3}"
modes="${TRACKING:-both}"
test "$modes" = both && modes="strict lazy"
P_SEQ=() P_RAND=()
declare -A F_SEQ_FIRST F_SEQ_DIRTY F_RAND_FIRST F_RAND_DIRTY SYNCS
for rep in $(seq 1 "$reps"); do
  # Plain file plugin.
  serve plain file disk.raw
  P_SEQ+=("$(fio_bw plain write 1M)")
  P_RAND+=("$(fio_bw plain randwrite 4K timed)")
  stop plain

  for m in $modes; do
    # Filter, fresh 64K bitmap: a first-touch sequential pass, then the
    # steady state (every granule dirty).
    rm -f d64.qdb
    serve f64 --filter="$filter" file disk.raw dirty-bitmap=d64.qdb \
      dirty-bitmap-tracking="$m"
    F_SEQ_FIRST[$m]+=" $(fio_bw f64 write 1M)"
    F_SEQ_DIRTY[$m]+=" $(fio_bw f64 write 1M)"
    F_RAND_DIRTY[$m]+=" $(fio_bw f64 randwrite 4K timed)"
    stop f64

    # Filter, fresh 4K bitmap: random first touches.
    rm -f d4.qdb
    serve f4 --filter="$filter" file disk.raw dirty-bitmap=d4.qdb \
      dirty-bitmap-granularity=4K dirty-bitmap-tracking="$m"
    F_RAND_FIRST[$m]+=" $(fio_bw f4 randwrite 4K timed)"
    ios=$(cat f4.ios)
    stop f4
    SYNCS[$m]+=" $(python3 -c "print('%.4f' % ($(syncs f4) / max(1, $ios)))")"
  done
done

echo
echo "median of $reps runs each:"
for m in $modes; do
  # shellcheck disable=SC2086
  {
    report "[$m] seq 1M qd16, first touch (64K gran.)" \
      "$(median "${P_SEQ[@]}")" "$(median ${F_SEQ_FIRST[$m]})"
    report "[$m] seq 1M qd16, already dirty" \
      "$(median "${P_SEQ[@]}")" "$(median ${F_SEQ_DIRTY[$m]})"
    report "[$m] rand 4K qd16, first touch (4K gran.)" \
      "$(median "${P_RAND[@]}")" "$(median ${F_RAND_FIRST[$m]})"
    report "[$m] rand 4K qd16, already dirty (64K gran.)" \
      "$(median "${P_RAND[@]}")" "$(median ${F_RAND_DIRTY[$m]})"
    printf '%-42s %s\n' "[$m] QDB fdatasyncs per random 4K write" \
      "$(python3 -c "import sys; v = sorted(float(x) for x in sys.argv[1:]); print(v[len(v) // 2])" ${SYNCS[$m]})"
  }
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
