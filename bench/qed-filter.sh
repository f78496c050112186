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
# sequentially (1 MiB, qd 8) and at random (4 KiB, qd 16).  Prints
# MiB/s, the ratios qed/raw (targets: >= 0.9 sequential, >= 0.8
# random 4K) and the HTTP requests per GiB read, counted in the web
# server's access log (target: qed within 1.2x raw).
#
# Throughput: both servers run side by side and short fio runs
# alternate raw, qed, raw, qed... (REPEAT rounds of RUNTIME seconds,
# default 5 x 3 s); the median of each is printed, so that both see
# the same load on a shared machine.  Requests: one pass per case
# reading a fixed amount (the whole GiB sequentially, 64 MiB at
# random), each with a fresh web server so that its log is complete.
#
# Not part of check.sh.

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
SERVERS=()
trap 'stop_servers; stop_web_server; rm -rf "$tmp"' EXIT

# 1 GiB of incompressible data, as raw and as QED (default geometry:
# 64 KiB clusters).
mkdir "$tmp/www"
head -c 1G /dev/urandom > "$tmp/www/disk.raw"
qemu-img convert -f raw -O qed "$tmp/www/disk.raw" "$tmp/www/disk.qed"
cat "$tmp/www/disk.raw" "$tmp/www/disk.qed" > /dev/null   # page cache

# serve KIND SOCK: start nbdkit curl (plus the filter for qed) on SOCK.
serve ()
{
  local kind="$1" sock="$2"
  rm -f "$sock"
  case "$kind" in
    qed) nbdkit -f -U "$sock" curl "$WEB_URL/disk.qed" --filter="$filter" & ;;
    raw) nbdkit -f -U "$sock" curl "$WEB_URL/disk.raw" & ;;
  esac
  SERVERS+=($!)
  wait_socket "$sock"
  nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null   # opened
}

stop_servers ()
{
  local p
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SERVERS[@]}"; do wait "$p" 2>/dev/null || true; done
  SERVERS=()
}

# fio_json SOCK RW BS DEPTH [FIO-ARGS...]: run fio, print "MiB/s bytes".
fio_json ()
{
  local sock="$1" rw="$2" bs="$3" depth="$4" out; shift 4
  out="$(mktemp)"
  fio --name=bench --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
      --rw="$rw" --bs="$bs" --iodepth="$depth" --numjobs=1 \
      --randrepeat=1 --output-format=json --output="$out" "$@" \
      >/dev/null 2>&1
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print("%.1f %d" % (j["bw_bytes"] / 1048576, j["io_bytes"]))' "$out"
  rm -f "$out"
}

: "${RUNTIME:=3}" "${REPEAT:=5}"
declare -A mibs reqs

# Throughput, alternating.
start_web_server "$tmp/www"
serve raw "$tmp/raw.sock"
serve qed "$tmp/qed.sock"
for p in seq rand; do
  raw_runs=(); qed_runs=()
  for i in $(seq 1 "$REPEAT"); do
    for kind in raw qed; do
      if test $p = seq; then
        x="$(fio_json "$tmp/$kind.sock" read 1M 8 --size=1G \
               --runtime="$RUNTIME" --time_based)"
      else
        x="$(fio_json "$tmp/$kind.sock" randread 4k 16 --size=1G \
               --runtime="$RUNTIME" --time_based)"
      fi
      if test $kind = raw; then raw_runs+=("${x% *}"); else qed_runs+=("${x% *}"); fi
    done
  done
  mibs[raw-$p]="$(median "${raw_runs[@]}")"
  mibs[qed-$p]="$(median "${qed_runs[@]}")"
done
stop_servers
stop_web_server

# HTTP requests per GiB, one fresh web server per pass.
for p in seq rand; do
  for kind in raw qed; do
    start_web_server "$tmp/www"
    serve $kind "$tmp/$kind.sock"
    if test $p = seq; then
      x="$(fio_json "$tmp/$kind.sock" read 1M 8 --size=1G)"
    else
      x="$(fio_json "$tmp/$kind.sock" randread 4k 16 --size=1G --io_size=64M)"
    fi
    stop_servers
    stop_web_server                     # lighttpd flushes its log
    n="$(grep -c '/disk\.' "$WEB_LOG")"
    reqs[$kind-$p]="$(python3 -c "import sys; print('%.0f' % (int(sys.argv[1]) / (int(sys.argv[2]) / 2**30)))" "$n" "${x#* }")"
  done
done

printf '%-24s %16s %16s %8s\n' "" "raw (curl)" "qed (filter)" "ratio"
for p in seq rand; do
  if test $p = seq; then name="seq read 1M qd8"; else name="rand read 4K qd16"; fi
  printf '%-24s %10s MiB/s %10s MiB/s %8s\n' "$name" \
    "${mibs[raw-$p]}" "${mibs[qed-$p]}" "$(ratio "${mibs[qed-$p]}" "${mibs[raw-$p]}")"
  printf '%-24s %16s %16s %8s\n' "  HTTP requests/GiB" \
    "${reqs[raw-$p]}" "${reqs[qed-$p]}" "$(ratio "${reqs[qed-$p]}" "${reqs[raw-$p]}")"
done
echo "targets: seq ratio >= 0.9, rand 4K ratio >= 0.8, requests/GiB ratio <= 1.2"
