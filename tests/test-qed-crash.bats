#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# kill -9 the server at a random moment of a write/flush workload,
# again and again on the same image.  After each crash: qemu-img check
# must find no corruption (leaks at most), our repair must leave it
# clean, and every write acknowledged before a completed flush must
# read back.

load functions.sh
load qed-helpers.sh

SIZE=$((8 * 1024 * 1024))
CRASHES=5

setup ()
{
  requires qemu-img --version
  requires_nbdsh
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
}

crash_loop ()
{
  local cs="$1" backing="$2" i sock status
  if test "$backing" = raw; then
    random_file base.raw $((SIZE / 2)) 11
    qemu-img create -q -f qed -o cluster_size=$cs -b base.raw -F raw disk.qed $SIZE
  else
    qemu-img create -q -f qed -o cluster_size=$cs disk.qed $SIZE
  fi
  for i in $(seq 1 $CRASHES); do
    qemu-img convert -O raw disk.qed initial.raw
    rm -f log; touch log
    sock="$BATS_TEST_TMPDIR/s$i"
    serve_qed "$sock" disk.qed
    "$NBD_PYTHON" "$BATS_TEST_DIRNAME/crash-workload.py" run \
      "$(nbd_uri "$sock")" $SIZE $i log &
    local client=$!
    # Let the workload get going (one flushed round) before the random
    # delay, so that every crash lands in the middle of real work.
    local w
    for w in $(seq 1 300); do test -s log && break; sleep 0.1; done
    test -s log
    sleep "0.$(( RANDOM % 8 + 2 ))"
    kill -9 "$(server_pid "$sock")"
    wait "$client" || true
    run qemu-img check disk.qed
    echo "crash $i: qemu-img check status $status: $output"
    test "$status" -eq 0 -o "$status" -eq 3
    run "$QAD_IMG" check --repair disk.qed
    echo "$output"
    test "$status" -eq 0 -o "$status" -eq 3
    run qemu-img check disk.qed
    test "$status" -eq 0 -o "$status" -eq 3
    qemu-img convert -O raw disk.qed after.raw
    "$NBD_PYTHON" "$BATS_TEST_DIRNAME/crash-workload.py" verify \
      after.raw initial.raw $SIZE $i log >&3
  done
}

@test "qed crash: 64K clusters, no backing file" { crash_loop 65536 none; }
@test "qed crash: 64K clusters, raw backing file" { crash_loop 65536 raw; }
@test "qed crash: 4K clusters, no backing file" { crash_loop 4096 none; }
