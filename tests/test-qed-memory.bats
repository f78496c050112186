#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Memory stays bounded whatever the image size: a 16 TiB image whose
# data is spread over 300 L2 tables (75 MiB of tables) is read
# everywhere with an 8 MiB L2 cache; the server's peak RSS must stay
# far below what caching every table would take.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires_nbdsh
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
}

@test "qed memory: 16 TiB image, 300 L2 tables, 8M cache, bounded RSS" {
  qemu-img create -q -f qed huge.qed 16T
  # One L2 table covers 2 GiB (64K clusters, 4-cluster tables).
  cmds=()
  for i in $(seq 0 299); do
    cmds+=(-c "write -P $(( i % 250 + 1 )) $(( i * 53 * (2 << 30) / 2 + 4096 )) 4k")
  done
  qemu-io -f qed "${cmds[@]}" huge.qed >/dev/null
  sock="$BATS_TEST_TMPDIR/m.sock"
  serve_qed "$sock" huge.qed l2-cache-size=8M readonly=true
  nbdsh -u "$(nbd_uri "$sock")" -c '
for rnd in range(3):
    for i in range(300):
        off = i * 53 * (2 << 30) // 2 + 4096
        assert h.pread(4096, off) == bytes([i % 250 + 1]) * 4096, i
'
  rss=$(awk '/VmHWM/ {print $2}' /proc/$(server_pid "$sock")/status)
  echo "peak RSS ${rss} kB"
  # 75 MiB of tables were read; the cache may hold 8 MiB of them.
  test "$rss" -lt $(( 40 * 1024 ))
}
