#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img compare A B, as qemu-img compare: QED (through its chain),
# add-cow (image, bitmap and backing) and raw, the first difference,
# the size rules with and without -s, and qemu-img's exit codes.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires_file "$QAD_IMG"
  requires qemu-img --version
  requires qemu-io --version
  cd "$BATS_TEST_TMPDIR"
  qemu-img create -q -f raw base.raw 3M
  qemu-io -f raw -c "write -P 1 1M 1M" base.raw >/dev/null
  qemu-img create -q -f qed -b base.raw -F raw top.qed 4M
  qemu-io -f qed -c "write -P 2 0 64k" -c "write -z 1536k 64k" top.qed >/dev/null
  qemu-img convert -O raw top.qed top.raw
}

@test "compare: identical disks in different formats, as qemu-img" {
  run "$QAD_IMG" compare top.qed top.raw
  test "$status" -eq 0 && test "$output" = "Images are identical."
  run "$QAD_IMG" compare -f qed -F raw top.qed top.raw
  test "$status" -eq 0
  qemu-img compare top.qed top.raw >/dev/null
  test -z "$("$QAD_IMG" compare -q top.qed top.raw)"
}

@test "compare: the first difference, exit 1" {
  cp top.raw other.raw
  printf X | dd of=other.raw bs=1 seek=1572999 conv=notrunc status=none
  run "$QAD_IMG" compare top.qed other.raw
  test "$status" -eq 1
  test "$output" = "Content mismatch at offset 1572999!"
  run qemu-img compare top.qed other.raw
  test "$status" -eq 1
}

@test "compare: sizes: zeroes past the smaller disk match unless -s" {
  cp top.raw big.raw
  truncate -s 8M big.raw
  run "$QAD_IMG" compare top.qed big.raw
  test "$status" -eq 0
  test "${lines[0]}" = "Warning: Image size mismatch!"
  run "$QAD_IMG" compare -s top.qed big.raw
  test "$status" -eq 1 && test "$output" = "Strict mode: Image size mismatch!"
  printf X | dd of=big.raw bs=1 seek=$((6 << 20)) conv=notrunc status=none
  run "$QAD_IMG" compare top.qed big.raw
  test "$status" -eq 1
  test "${lines[1]}" = "Content mismatch at offset 6291456!"
}

@test "compare: an add-cow disk reads as the filter serves it" {
  requires_file "$ADDCOW_FILTER"
  requires_nbdsh
  truncate -s 4M disk.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw -b top.qed -F qed >/dev/null
  run "$QAD_IMG" compare a.add-cow top.raw
  test "$status" -eq 0
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" file disk.raw addcow=a.add-cow
  nbdsh -u "$(nbd_uri "$BATS_TEST_TMPDIR/s")" -c 'h.pwrite(b"9" * 100, 70000)' -c 'h.flush()'
  nbdcopy "$(nbd_uri "$BATS_TEST_TMPDIR/s")" served.raw
  stop_nbdkit "$BATS_TEST_TMPDIR/s"
  run "$QAD_IMG" compare a.add-cow served.raw
  test "$status" -eq 0
  run "$QAD_IMG" compare a.add-cow top.raw
  test "$status" -eq 1 && test "$output" = "Content mismatch at offset 70000!"
}

@test "compare: exit 2 when a file cannot be opened; -p; bad usage" {
  run "$QAD_IMG" compare top.qed missing.raw
  test "$status" -eq 2
  grep -q "^qad-img: missing.raw: No such file" <<<"$output"
  "$QAD_IMG" create -f qdb b.qdb 4M
  run "$QAD_IMG" compare b.qdb top.raw
  test "$status" -eq 2
  grep -q "^qad-img: b.qdb: a QDB file holds bitmaps, not a disk" <<<"$output"
  run "$QAD_IMG" compare -f vmdk top.qed top.raw
  test "$status" -eq 2
  "$QAD_IMG" compare -p top.qed top.raw | tr '\r' '\n' | grep -q "^    (100.00/100%)$"
  run "$QAD_IMG" compare top.qed
  test "$status" -eq 2
  "$QAD_IMG" compare --help | grep -q "^usage: qad-img compare"
  # A read that fails (an invalid L2 entry): exit 3.
  cp top.qed bad.qed
  l2=$(peek bad.qed 65536 Q)
  poke bad.qed "$l2" Q 12345
  run "$QAD_IMG" compare bad.qed top.raw
  test "$status" -eq 3
  grep -q "^qad-img: bad.qed" <<<"$output"
}
