#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# ./quickstart.sh: install what is missing for the demo, build, create a small demo
# QED image over a raw backing file, and serve it with the plugin until
# Ctrl-C.  Set QUICKSTART_NO_SERVE=1 to stop after printing the URI
# check (used by the tests).

set -euo pipefail
cd "$(dirname "$0")"
srcdir="$(pwd)"

# Only what the build and this demo need; ./check.sh installs the rest.
./scripts/install-deps.sh minimal

if ! test -x qed.so || ! test -x tools/qad-img; then
  echo "=== building ==="
  test -x configure || autoreconf -fi >/dev/null
  test -f Makefile || ./configure -q
  make -j"$(nproc)" >/dev/null
fi

demo="$srcdir/demo"
mkdir -p "$demo"
rm -f "$demo/base.raw" "$demo/disk.qed" "$demo/nbd.sock"

# A 64 MiB raw backing file with some recognisable data, and a QED
# overlay with a few writes of its own and a zeroed region.
qemu-img create -q -f raw "$demo/base.raw" 64M
qemu-io -f raw -c "write -P 0xb0 0 8M" -c "write -P 0xb1 32M 4M" \
  "$demo/base.raw" >/dev/null
tools/qad-img create "$demo/disk.qed" 128M \
  --backing=base.raw --backing-format=raw
qemu-io -f qed -c "write -P 0x51 1M 2M" -c "write -z 33M 1M" \
  -c "write -P 0x52 100M 64k" "$demo/disk.qed" >/dev/null

sock="$demo/nbd.sock"
uri="nbd+unix:///?socket=$sock"

cat <<MSG

Demo image: $demo/disk.qed (128 MiB QED over $demo/base.raw)
$(tools/qad-img info "$demo/disk.qed" | sed 's/^/  /')

Serving it at:  $uri

Try, in another terminal:
  nbdinfo --map '$uri'
  qemu-img convert -f raw '$uri' -O qcow2 /tmp/demo.qcow2

Press Ctrl-C to stop.
MSG

if test -n "${QUICKSTART_NO_SERVE:-}"; then
  nbdkit -U "$sock" ./qed.so file="$demo/disk.qed" --run 'nbdinfo --map "$uri"'
  exit 0
fi
# -f: stay in the foreground so that Ctrl-C stops it cleanly.
exec nbdkit -f -U "$sock" ./qed.so file="$demo/disk.qed"
