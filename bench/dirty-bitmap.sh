#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Benchmark of nbdkit-dirty-bitmap-filter: fio (nbd engine, qd16)
# writes through the filter over the file plugin, versus the file
# plugin alone, for each tracking mode.  Prints throughput and the
# ratio filter / plain for:
#   - sequential 1M writes over the whole disk, first touch (a fresh
#     server and bitmap for each pass, 64K granules);
#   - random 4K writes, first touch (a fresh server and bitmap with 4K
#     granules for each run);
#   - sequential 1M and random 4K writes once every granule is dirty
#     (the steady state), on servers kept running.
# Not run by "make check".  Usage (from the build tree):
#   bench/dirty-bitmap.sh [SIZE] [SECONDS]     (default 1G, 2)
# SECONDS is the length of each random run.
#
# How the ratios are made.  This machine's speed drifts by 10-20%
# within a minute (shared hosts), more than the filter costs, so one
# long run of each side, or medians of runs minutes apart, compare
# drift.  Instead each figure is the median over PAIRS (default 15)
# of a ratio between runs made back to back: in each round, every side
# (plain, then each mode; the order rotates each round) does the same
# short run from the same state, and each mode's result is divided by
# the plain one of the same round.  The interquartile range of those
# ratios is printed beside the median.  Before every run the page
# cache is synced, so no run pays for an earlier one's writeback.
#
# METRICS="seq-first rand-first seq-dirty rand-dirty" (the default)
# selects figures; SKIP_PRECISION=1 skips the last part.
# TRACKING=strict|lazy|both (default both): the dirty-bitmap-tracking=
# mode(s) to measure.  nbdkit's nofilter filter is measured the same
# way, as the floor: the cost of any filter layer.  For the random first-touch runs the fdatasyncs
# of the QDB file per write are counted from the filter's statistics
# (nbdkit -v, without the per-request lines).  Last, the precision an
# unclean shutdown costs lazy tracking is measured (see below).
# Environment: DIRTY_BITMAP_FILTER (default ./dirty-bitmap.so), QAD_IMG
# (default ./tools/qad-img), WORKDIR, DISK_DIR.

set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
size="${1:-1G}"
secs="${2:-2}"
pairs="${PAIRS:-15}"
filter="${DIRTY_BITMAP_FILTER:-$(pwd)/dirty-bitmap.so}"
qad_img="${QAD_IMG:-$(pwd)/tools/qad-img}"
work="${WORKDIR:-$(mktemp -d -p /var/tmp)}"
trap 'cleanup' EXIT
declare -A pids                 # the servers running, by name
cleanup ()
{
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  test -z "${disk:-}" || rm -f "$disk"
  test -n "${WORKDIR:-}" || rm -rf "$work"
}

test -f "$filter" || { echo "$0: filter not found: $filter" >&2; exit 1; }
cd "$work"
echo "work dir $work, disk $size, $secs s per random run, $pairs rounds"
# A fully allocated disk, so the plugin writes in place; in DISK_DIR
# when set (a tmpfs takes the file system's writeback out of the
# noise; the QDB files stay in the work dir).
disk="${DISK_DIR:-$work}/dirty-bitmap-bench-$$.raw"
fallocate -l "$size" "$disk" 2>/dev/null || truncate -s "$size" "$disk"
dd if=/dev/zero of="$disk" bs=1M count=$(( $(stat -c %s "$disk") >> 20 )) \
  conv=notrunc status=none
sync

serve ()                        # serve NAME ARGS...
{
  local name="$1"; shift
  rm -f "$name.sock" "$name.pid"
  sync                          # same starting state for every run
  # -v for the filter's statistics at exit, but no line per request:
  # writing those serialises every request on the log and costs more
  # than what is measured.
  nbdkit -v -D nbdkit.backend.datapath=0 -U "$work/$name.sock" \
    -P "$work/$name.pid" "$@" 2>"$name.log"
  wait_server "$work/$name.pid" "$work/$name.sock"
  pids[$name]="$(cat "$name.pid")"
}
stop ()                         # stop NAME [SIGNAL]
{
  local p="${pids[$1]}"
  kill -"${2:-TERM}" "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
  unset "pids[$1]"              # its pid may be reused
}

# cpu_ticks PID: the user + system time of process PID, in clock ticks
# (fields 14 and 15 of /proc/PID/stat, counted after the command name).
cpu_ticks ()
{
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# fio_bw NAME RW BS [FIO-ARGS...]: run fio over the whole disk against
# server NAME, print KiB/s.  Leaves the number of writes in NAME.ios
# and the server's CPU time (user + system, all threads) per GiB
# written, in ms, in NAME.cpu.
fio_bw ()
{
  local name="$1" rw="$2" bs="$3"; shift 3
  local ticks0
  sync
  ticks0=$(cpu_ticks "${pids[$name]}")
  fio --name=job --ioengine=nbd --uri="nbd+unix:///?socket=$work/$name.sock" \
      --rw="$rw" --bs="$bs" --iodepth=16 --numjobs=1 --size="$size" \
      --direct=0 --output-format=json "$@" 2>/dev/null >"$name.json"
  python3 -c '
import json, os, sys
name, ticks = sys.argv[1], int(sys.argv[2])
s = open(name + ".json").read()   # fio may print a line before the JSON
w = json.loads(s[s.index("{"):])["jobs"][0]["write"]
open(name + ".ios", "w").write("%d\n" % w["total_ios"])
ms = ticks * 1000 / os.sysconf("SC_CLK_TCK")
open(name + ".cpu", "w").write("%.1f\n" % (ms / max(w["io_bytes"], 1) * 2**30))
print(w["bw"])' "$name" "$(( $(cpu_ticks "${pids[$name]}") - ticks0 ))"
}
timed=(--time_based --runtime="$secs")

# syncs NAME: fdatasyncs of the QDB file from a stopped server's log.
syncs ()
{
  sed -n 's/.*requests needed new bits, \([0-9]*\) commits.* \([0-9]*\) checkpoints.*/\1 \2/p' \
    "$1.log" | awk '{ print $1 + $2 }'
}

modes="${TRACKING:-both}"
test "$modes" = both && modes="strict lazy"
# The reference: nbdkit's nofilter filter, which passes every request
# through untouched, shows what any filter layer costs in nbdkit.
sides=(plain nofilter)
for m in $modes; do sides+=("$m"); done

# serve_side SIDE NAME [FILTER-ARGS...]: a server for SIDE (plain,
# nofilter or a tracking mode) named NAME, with a fresh bitmap.
serve_side ()
{
  local side="$1" name="$2"; shift 2
  rm -f "$name.qdb"
  if test "$side" = plain; then
    serve "$name" file "$disk"
  elif test "$side" = nofilter; then
    serve "$name" --filter=nofilter file "$disk"
  else
    serve "$name" --filter="$filter" file "$disk" dirty-bitmap="$name.qdb" \
      dirty-bitmap-tracking="$side" "$@"
  fi
}

# run_once METRIC SIDE: one run of METRIC for SIDE, its KiB/s appended
# to RES[METRIC,SIDE] and its server CPU per GiB to CPU[METRIC,SIDE].
# Not in a subshell: it also adds up SYNCS and IOS.
declare -A RES CPU SYNCS IOS
run_once ()
{
  local metric="$1" side="$2" name="f-$2" bw
  case "$metric" in
    seq-first)
      serve_side "$side" "$name"
      bw=$(fio_bw "$name" write 1M)
      stop "$name" ;;
    rand-first)
      serve_side "$side" "$name" dirty-bitmap-granularity=4K
      bw=$(fio_bw "$name" randwrite 4K "${timed[@]}")
      stop "$name"
      if test "$side" != plain && test "$side" != nofilter; then
        SYNCS[$side]=$(( ${SYNCS[$side]:-0} + $(syncs "$name") ))
        IOS[$side]=$(( ${IOS[$side]:-0} + $(cat "$name.ios") ))
      fi ;;
    seq-dirty) name="d-$side"; bw=$(fio_bw "$name" write 1M) ;;
    rand-dirty) name="d-$side"; bw=$(fio_bw "$name" randwrite 4K "${timed[@]}") ;;
  esac
  RES[$metric,$side]+=" $bw"
  CPU[$metric,$side]+=" $(cat "$name.cpu")"
}

# measure METRIC: PAIRS rounds; in round R the sides run in an order
# rotated by R.
measure ()
{
  local metric="$1" r i n=${#sides[@]}
  for r in $(seq 0 $((pairs - 1))); do
    for i in $(seq 0 $((n - 1))); do
      run_once "$metric" "${sides[$(( (i + r) % n ))]}"
    done
  done
}

read -r -a cpu0 < <(grep '^cpu ' /proc/stat)     # for steal
# Warm up: one plain pass over the disk.
serve warm file "$disk"
fio_bw warm write 1M >/dev/null
stop warm

metrics="${METRICS:-seq-first rand-first seq-dirty rand-dirty}"
for metric in $metrics; do
  case "$metric" in
    *-first) measure "$metric" ;;
  esac
done
if [[ "$metrics" = *-dirty* ]]; then
  # For the steady state, one server per side stays up with every
  # granule dirty (one full pass first).
  for side in "${sides[@]}"; do
    serve_side "$side" "d-$side"
    fio_bw "d-$side" write 1M >/dev/null
  done
  for metric in $metrics; do
    case "$metric" in
      *-dirty) measure "$metric" ;;
    esac
  done
  for side in "${sides[@]}"; do stop "d-$side"; done
fi

# report LABEL METRIC MODE: the medians of throughput and of the
# per-round throughput ratios (filter / plain), with their
# interquartile range, then the same for the server's CPU time per GiB
# written as plain / filter: a cost ratio that the host's CPU steal,
# which moves throughput by a factor of two here, hardly touches.
report ()
{
  # shellcheck disable=SC2086 # the lists are split on purpose
  python3 - "$1" "$3" ${RES[$2,plain]} -- ${RES[$2,$3]} -- \
    ${CPU[$2,plain]} -- ${CPU[$2,$3]} <<'PY'
import statistics, sys
label, mode = sys.argv[1], sys.argv[2]
lists, cur = [], []
for a in sys.argv[3:] + ["--"]:
    if a == "--":
        lists.append([float(x) for x in cur]); cur = []
    else:
        cur.append(a)
bw_p, bw_f, cpu_p, cpu_f = lists
def summary(r):
    r = sorted(r)
    q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else r * 3
    return "%.3f (IQR %.3f-%.3f)" % (statistics.median(r), q1, q3)
print("%-44s plain %7.0f  filter %7.0f KiB/s  ratio %s"
      % ("[%s] %s" % (mode, label), statistics.median(bw_p),
         statistics.median(bw_f),
         summary([f / p for f, p in zip(bw_f, bw_p)])))
print("%-44s plain %7.0f  filter %7.0f ms/GiB  ratio %s"
      % ("      server CPU per GiB written", statistics.median(cpu_p),
         statistics.median(cpu_f),
         summary([p / f for f, p in zip(cpu_f, cpu_p) if f > 0])))
PY
}

# steal: the host's CPU steal, in percent of all CPU time since the
# bench started (the "cpu" line of /proc/stat: fields 1 to 8 are user
# to steal).
steal ()
{
  local -a c; read -r -a c < <(grep '^cpu ' /proc/stat)
  local i total=0
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + c[i] - cpu0[i] )); done
  echo $(( 100 * (c[8] - cpu0[8]) / (total > 0 ? total : 1) ))
}

echo
echo "medians of $pairs back-to-back rounds (ratio: median of the" \
     "per-round ratios); CPU steal by the host meanwhile: $(steal)%"
labels=(
  seq-first "seq 1M qd16, first touch (64K gran.)"
  seq-dirty "seq 1M qd16, already dirty"
  rand-first "rand 4K qd16, first touch (4K gran.)"
  rand-dirty "rand 4K qd16, already dirty (64K gran.)"
)
for m in nofilter $modes; do
  for i in 0 2 4 6; do
    if [[ " $metrics " = *" ${labels[$i]} "* ]]; then
      report "${labels[$((i + 1))]}" "${labels[$i]}" "$m"
    fi
  done
  if test -n "${IOS[$m]:-}"; then
    printf '%-44s %s\n' "[$m] QDB fdatasyncs per random 4K write" \
      "$(ratio "${SYNCS[$m]}" "$(( IOS[$m] > 0 ? IOS[$m] : 1 ))" 4)"
  fi
done

if test -n "${SKIP_PRECISION:-}"; then exit 0; fi
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
  serve p --filter="$filter" file "$disk" dirty-bitmap=p.qdb \
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
