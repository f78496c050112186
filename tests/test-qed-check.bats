#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# NEED_CHECK and the consistency check of the QED plugin: when the flag
# is set and cleared, the check and repair on open, leak reclaim, and
# qad-img check --repair.

load functions.sh
load qed-helpers.sh

setup () { qed_server_setup; }

features () { peek "$1" 16 Q; }

@test "qed check: NEED_CHECK is set before allocating and cleared by flush" {
  requires_nbdsh
  qemu-img create -q -f qed disk.qed 16M
  serve_qed "$SOCK" disk.qed
  test $(( $(features disk.qed) & 2 )) -eq 0
  nbdsh -u "$URI" -c 'h.pwrite(b"x" * 4096, 0)'
  test $(( $(features disk.qed) & 2 )) -eq 2
  nbdsh -u "$URI" -c 'h.flush()'
  test $(( $(features disk.qed) & 2 )) -eq 0
  # In-place writes do not set it again.
  nbdsh -u "$URI" -c 'h.pwrite(b"y" * 4096, 0)'
  test $(( $(features disk.qed) & 2 )) -eq 0
  nbdsh -u "$URI" -c 'h.pwrite(b"z" * 4096, 8 << 20)'
  test $(( $(features disk.qed) & 2 )) -eq 2
  stop_nbdkit "$SOCK"
  # A clean shutdown clears it.
  test $(( $(features disk.qed) & 2 )) -eq 0
  qemu-img check disk.qed
}

@test "qed check: with a backing file NEED_CHECK is never set" {
  requires_nbdsh
  truncate -s 16M base.raw
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 16M
  serve_qed "$SOCK" disk.qed
  nbdsh -u "$URI" -c 'h.pwrite(b"x" * 4096, 0)'
  test $(( $(features disk.qed) & 2 )) -eq 0
}

@test "qed check: NEED_CHECK on open runs the repair (check=auto), leaks reclaimed" {
  qemu-img create -q -f qed disk.qed 16M
  qemu-io -f qed -c "write -P 0x44 0 1M" disk.qed >/dev/null
  # Simulate a crash: three leaked clusters and NEED_CHECK set.
  truncate -s $(( $(stat -c %s disk.qed) + 3 * 65536 )) disk.qed
  poke disk.qed 16 Q 2
  run qemu-img check disk.qed
  test "$status" -eq 3                  # leaks only
  cp disk.qed off.qed
  # check=off serves it untouched.
  serve_qed "$SOCK" off.qed check=off
  stop_nbdkit "$SOCK"
  test $(( $(features off.qed) & 2 )) -eq 2
  # check=auto repairs before serving.
  serve_qed "$SOCK" disk.qed
  qemu-io -f raw -r -c "read -P 0x44 0 1M" "$(nbd_uri "$SOCK")" | (! grep -q failed)
  stop_nbdkit "$SOCK"
  qemu-img check disk.qed
  test $(( $(features disk.qed) & 2 )) -eq 0
}

@test "qed check: leaks in the middle are reclaimed by moving clusters down" {
  qemu-img create -q -f qed disk.qed 16M
  qemu-io -f qed -c "write -P 0x55 0 256k" disk.qed >/dev/null
  l2=$(peek disk.qed 65536 Q)
  # Point cluster 1's entry elsewhere: its old cluster leaks, and the
  # new one is a fresh cluster at the end (copy the data there first).
  old=$(peek disk.qed $((l2 + 8)) Q)
  size=$(stat -c %s disk.qed)
  dd if=disk.qed of=disk.qed bs=65536 skip=$((old / 65536)) seek=$((size / 65536)) count=1 conv=notrunc status=none
  poke disk.qed $((l2 + 8)) Q $size
  run qemu-img check disk.qed
  test "$status" -eq 3
  "$QAD_IMG" check --repair disk.qed
  qemu-img check disk.qed
  test "$(stat -c %s disk.qed)" -eq "$size"
  qemu-io -f qed -r -c "read -P 0x55 0 256k" disk.qed | (! grep -q failed)
}

@test "qed check: check --repair clears invalid entries and reports data loss" {
  qemu-img create -q -f qed disk.qed 16M
  qemu-io -f qed -c "write -P 0x66 0 256k" disk.qed >/dev/null
  l2=$(peek disk.qed 65536 Q)
  poke disk.qed $((l2 + 8)) Q 12345
  cluster0=$(peek disk.qed $l2 Q)
  poke disk.qed $((l2 + 16)) Q $cluster0     # referenced twice
  run "$QAD_IMG" check disk.qed
  test "$status" -eq 2
  grep -q "entry 1 .*= 12345: invalid" <<<"$output"
  grep -q "referenced twice" <<<"$output"
  run "$QAD_IMG" check --json disk.qed
  grep -q '"corruptions": 2' <<<"$output"
  run "$QAD_IMG" check --repair disk.qed
  grep -q "data they pointed at is lost" <<<"$output"
  # The two orphaned clusters sit below the L2 table, which cannot
  # move into a 2-cluster gap: they are punched and still counted.
  test "$status" -eq 3
  grep -q "2 leaked clusters could not be moved" <<<"$output"
  run qemu-img check disk.qed
  test "$status" -eq 3
  qemu-io -f qed -r -c "read -P 0x66 0 64k" -c "read -P 0 64k 128k" \
    -c "read -P 0x66 192k 64k" disk.qed | (! grep -q failed)
}
