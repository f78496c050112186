#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# bench/qed-filter.sh: the qed filter over HTTP.  One web server
# (lighttpd on 127.0.0.1) serves a 1 GiB QED image and the same bytes
# as a raw file; fio (nbd engine) reads
#   qed:  nbdkit curl URL/disk.qed --filter=qed
#   raw:  nbdkit curl URL/disk.raw
# sequentially (1 MiB, qd 8, the whole GiB) and at random (4 KiB,
# qd 16, RUNTIME seconds), in the same run.  Prints MiB/s, the ratios
# qed/raw (targets: >= 0.9 sequential, >= 0.8 random 4K) and the HTTP
# requests per GiB read, from the web server's access log (target:
# qed within 1.2x raw).
#
# Each figure is the median of REPEAT runs (default 3), raw and qed
# alternating so that both see the same load.
#
# Not part of check.sh.  RUNTIME=seconds for random reads (default 10).

set -euo pipefail
cd "$(dirname "$0")/.."
top="$(pwd)"
. bench/bench-lib.sh
. tests/web-server.sh

filter="$top/qed-filter.so"
test -e "$filter" || { echo "build first: $filter is missing" >&2; exit 1; }
for cmd in lighttpd fio qemu-img; do
  command -v $cmd >/dev/null || { echo "$cmd is required" >&2; exit 1; }
done

tmp="$(mktemp -d /var/tmp/qed-filter-bench.XXXXXX)"
SERVER=
trap 'test -z "$SERVER" || kill "$SERVER" 2>/dev/null; stop_web_server; rm -rf "$tmp"' EXIT
sock="$tmp/sock"
uri="nbd+unix:///?socket=$sock"

# 1 GiB of incompressible data, as raw and as QED (default geometry:
# 64 KiB clusters).
mkdir "$tmp/www"
head -c 1G /dev/urandom > "$tmp/www/disk.raw"
qemu-img convert -f raw -O qed "$tmp/www/disk.raw" "$tmp/www/disk.qed"
cat "$tmp/www/disk.raw" "$tmp/www/disk.qed" > /dev/null   # page cache
start_web_server "$tmp/www"

start_server ()
{
  rm -f "$sock"
  case "$1" in
    qed) nbdkit -f -U "$sock" curl "$WEB_URL/disk.qed" --filter="$filter" & ;;
    raw) nbdkit -f -U "$sock" curl "$WEB_URL/disk.raw" & ;;
  esac
  SERVER=$!
  wait_socket "$sock"
  nbdinfo --size "$uri" >/dev/null     # connect once: open done
}

stop_server ()
{
  kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true
  SERVER=
}

# measure KIND RW BS DEPTH SIZE RUNTIME: prints "MiB/s requests/GiB".
measure ()
{
  local kind="$1" rw="$2" bs="$3" depth="$4" size="$5" rt="$6"
  local out before after
  out="$(mktemp)"
  start_server "$kind"
  before="$(web_requests)"
  fio --name=bench --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" \
      --iodepth="$depth" --size="$size" ${rt:+--runtime="$rt" --time_based} \
      --randrepeat=1 --numjobs=1 --output-format=json --output="$out" \
      >/dev/null 2>&1
  stop_server
  after="$(web_requests)"
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
mibs = j["bw_bytes"] / 1048576
gib = j["io_bytes"] / 1073741824
print("%.1f %.0f" % (mibs, (int(sys.argv[3]) - int(sys.argv[2])) / gib))
' "$out" "$before" "$after"
  rm -f "$out"
}

: "${RUNTIME:=10}" "${REPEAT:=3}"

# med "MIBS REQS"...: the median of each column.
med ()
{
  python3 -c '
import statistics, sys
rows = [list(map(float, a.split())) for a in sys.argv[1:]]
print("%.1f %.0f" % tuple(statistics.median(c) for c in zip(*rows)))' "$@"
}

declare -A r
for p in seq rand; do
  raw_runs=(); qed_runs=()
  for i in $(seq 1 "$REPEAT"); do
    for kind in raw qed; do
      if test $p = seq; then
        x="$(measure $kind read 1M 8 1G '')"
      else
        x="$(measure $kind randread 4k 16 1G "$RUNTIME")"
      fi
      if test $kind = raw; then raw_runs+=("$x"); else qed_runs+=("$x"); fi
    done
  done
  r[raw-$p]="$(med "${raw_runs[@]}")"
  r[qed-$p]="$(med "${qed_runs[@]}")"
done

printf '%-24s %12s %12s %8s\n' "" "raw (curl)" "qed (filter)" "ratio"
for p in seq rand; do
  set -- ${r[raw-$p]} ${r[qed-$p]}
  name="$( [ $p = seq ] && echo "seq read 1M qd8" || echo "rand read 4K qd16")"
  printf '%-24s %9s MiB/s %9s MiB/s %8s\n' "$name" "$1" "$3" "$(ratio "$3" "$1")"
  printf '%-24s %12s %12s %8s\n' "  HTTP requests/GiB" "$2" "$4" "$(ratio "$4" "$2")"
done
echo "targets: seq ratio >= 0.9, rand 4K ratio >= 0.8, requests/GiB ratio <= 1.2"
