#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Many connections writing interleaved, unaligned chunks of the same
# clusters at once: allocation races (same data cluster, same L2
# table) and partial-cluster read-modify-write races.  The result must
# be exact byte for byte, and qemu-img check must find no error and no
# leak (a double allocation would leak the loser's cluster).

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires_file "$QED_PLUGIN"
  requires_file "$TESTS_BIN/qed-concurrent"
  cd "$BATS_TEST_TMPDIR"
}

concurrent ()
{
  local cs="$1" chunk="$2" backing="$3" size=$((48 * 1024 * 1024))
  shift 3
  if test "$backing" = raw; then
    random_file base.raw $size 5
    qemu-img create -q -f qed -o cluster_size=$cs -b base.raw -F raw disk.qed $size
  else
    qemu-img create -q -f qed -o cluster_size=$cs disk.qed $size
  fi
  serve_qed "$BATS_TEST_TMPDIR/s" disk.qed --threads=16 "$@"
  "$TESTS_BIN/qed-concurrent" "$(nbd_uri "$BATS_TEST_TMPDIR/s")" \
    $size $chunk 8 expected.raw
  stop_nbdkit "$BATS_TEST_TMPDIR/s"
  qemu-img convert -O raw disk.qed got.raw
  cmp expected.raw got.raw
  "$QAD_IMG" check disk.qed
  # Every guest cluster allocated exactly once, and the file is exactly
  # as large as qemu-io makes it when it writes the whole disk alone.
  qemu-img create -q -f qed -o cluster_size=$cs ref.qed $size
  qemu-io -f qed -c "write 0 $size" ref.qed >/dev/null
  test "$(stat -c %s disk.qed)" -eq "$(stat -c %s ref.qed)"
  # qemu-img check reports the same on both (QEMU 7.2 miscounts 3
  # "leaks" on a fully written 4K-cluster image it wrote itself).
  run qemu-img check --output=json disk.qed
  local ours="$output" ours_status=$status
  run qemu-img check --output=json ref.qed
  test "$ours_status" -eq "$status"
  grep -q "\"allocated-clusters\": $(( size / cs ))" <<<"$ours"
  diff <(grep -E '"(leaks|check-errors|corruptions)"' <<<"$ours") \
       <(grep -E '"(leaks|check-errors|corruptions)"' <<<"$output")
}

@test "qed concurrent: 64K clusters, 3000-byte chunks, 8 connections" {
  concurrent 65536 3000 none
}

@test "qed concurrent: 4K clusters, 1000-byte chunks, 8 connections" {
  concurrent 4096 1000 none
}

@test "qed concurrent: 64K clusters over a backing file, 20000-byte chunks" {
  concurrent 65536 20000 raw
}

@test "qed concurrent: 1M clusters, 100000-byte chunks" {
  concurrent 1048576 100000 none
}

@test "qed concurrent: 4K clusters with a one-table L2 cache (eviction races)" {
  # 16 KiB tables, 16 KiB cache: every table switch evicts, while other
  # threads load tables and update entries.
  concurrent 4096 1000 none l2-cache-size=16K
}
