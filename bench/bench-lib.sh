# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Shared by the bench/*.sh scripts: run fio's nbd engine against a
# server and print MiB/s or IOPS.

: "${RUNTIME:=10}"            # seconds per pattern

# nbd_python: a python3 with libnbd's nbd module, shared with the tests.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/nbd-python.sh"

# fio_run URI RW BS IODEPTH [SIZE]: print the throughput in MiB/s.
fio_run ()
{
  local uri="$1" rw="$2" bs="$3" depth="$4" size="${5:-1G}" out
  out="$(mktemp)"
  fio --name=bench --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" \
      --iodepth="$depth" --size="$size" --runtime="$RUNTIME" \
      --numjobs=1 --output-format=json --output="$out" >/dev/null 2>&1
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
bw = j["read"]["bw_bytes"] + j["write"]["bw_bytes"]
print("%.1f" % (bw / 1048576))' "$out"
  rm -f "$out"
}

# wait_socket SOCK: wait for a Unix socket to appear.
wait_socket ()
{
  local i
  for i in $(seq 1 100); do test -S "$1" && return 0; sleep 0.1; done
  echo "server did not start on $1" >&2
  return 1
}

# ratio A B [DECIMALS]: A/B with two decimals (or DECIMALS).
ratio ()
{
  python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.*f' % (int(sys.argv[3]), a / b if b else 0))" "$1" "$2" "${3:-2}"
}

# median N...: the median of the numbers given.
median ()
{
  python3 -c "import statistics, sys; print('%.1f' % statistics.median(map(float, sys.argv[1:])))" "$@"
}

# wait_server PIDFILE SOCK: wait for a backgrounded (daemonized) nbdkit:
# its pidfile is written by the child after the parent has returned,
# so wait for it, then for an answer on SOCK.
wait_server ()
{
  local i
  for i in $(seq 1 300); do
    test -s "$1" && break
    sleep 0.1
  done
  if ! test -s "$1"; then
    echo "$0: nbdkit wrote no pidfile ($1) within 30 s" >&2
    return 1
  fi
  if ! nbdinfo --size "nbd+unix:///?socket=$2" >/dev/null; then
    echo "$0: nbdkit on $2 does not answer" >&2
    return 1
  fi
}
