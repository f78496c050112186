#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Corrupt, truncated and hostile images: nbdkit must refuse them with a
# message naming the file, the field and the value, and exit non-zero
# without a crash (a signal would give status >= 128).  Corrupt table
# entries met while serving fail that request with an error, and the
# server stays up.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
  qemu-img create -q -f qed disk.qed 64M
  qemu-io -f qed -c "write -P 0x11 0 128k" -c "write -P 0x22 32M 64k" \
    disk.qed >/dev/null
}

# serve_refused PATTERN: serving disk.qed fails cleanly with PATTERN,
# naming the file, and leaves it unchanged.
serve_refused ()
{
  refused disk.qed "$1" nbdkit -U - "$QED_PLUGIN" file=disk.qed --run true
  grep -q "disk.qed" <<<"$output"
}

@test "qed corrupt: bad magic" {
  printf 'XED\0' | dd of=disk.qed conv=notrunc status=none
  serve_refused "not a QED image"
}

@test "qed corrupt: empty and truncated files" {
  : > disk.qed
  serve_refused "not a QED image"
  printf 'QED\0\0\0\1\0' > disk.qed
  serve_refused "truncated QED header"
  qemu-img create -q -f qed disk.qed 64M
  truncate -s 70000 disk.qed          # L1 table cut short
  serve_refused "l1_table_offset=65536"
}

@test "qed corrupt: cluster_size zero, not a power of 2, too big, too small" {
  for v in 0 65537 134217728 2048 4294967295; do
    poke disk.qed 4 I $v
    serve_refused "cluster_size=$v"
  done
}

@test "qed corrupt: table_size 0, 3 and 32" {
  for v in 0 3 32; do
    poke disk.qed 8 I $v
    serve_refused "table_size=$v"
  done
}

@test "qed corrupt: header_size 0 and huge" {
  poke disk.qed 12 I 0
  serve_refused "header_size=0"
  poke disk.qed 12 I 4294967295
  serve_refused "header_size=4294967295"
}

@test "qed corrupt: unknown feature bit is refused and named" {
  poke disk.qed 16 Q 0x100
  serve_refused "features=0x100 \\(unknown bits 0x100\\)"
}

@test "qed corrupt: image_size not a multiple of 512, and too large" {
  poke disk.qed 48 Q 1000
  serve_refused "image_size=1000"
  poke disk.qed 48 Q $(( (64 << 40) + 512 ))
  serve_refused "image_size=70368744178176 exceeds the maximum"
}

@test "qed corrupt: L1 table offset unaligned, in the header, past EOF" {
  poke disk.qed 40 Q 65537
  serve_refused "l1_table_offset=65537"
  poke disk.qed 40 Q 0
  serve_refused "l1_table_offset=0"
  poke disk.qed 40 Q $((1 << 40))
  serve_refused "l1_table_offset=1099511627776"
}

@test "qed corrupt: backing name past the header area" {
  qemu-img create -q -f raw base.raw 64M
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 64M
  poke disk.qed 56 I 65530
  serve_refused "backing_filename_offset=65530"
  poke disk.qed 56 I 64
  poke disk.qed 60 I 0
  serve_refused "backing_filename_size=0"
}

@test "qed corrupt: missing backing file and backing loops" {
  qemu-img create -q -f raw base.raw 64M
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 64M
  rm base.raw
  serve_refused "base.raw"
  # A image whose backing file is itself, and a two-image loop.
  qemu-img create -q -f qed a.qed 64M
  qemu-img create -q -f qed -b a.qed -F qed -u b.qed 64M
  qemu-img rebase -q -f qed -u -b b.qed -F qed a.qed
  expect_fail_cleanly "loop" nbdkit -U - "$QED_PLUGIN" file=a.qed --run true
  qemu-img rebase -q -f qed -u -b disk.qed -F qed disk.qed
  serve_refused "loop"
}

@test "qed corrupt: a deep chain is refused" {
  qemu-img create -q -f qed img0.qed 1M
  for i in $(seq 1 40); do
    qemu-img create -q -f qed -b img$((i - 1)).qed -F qed -u img$i.qed 1M
  done
  expect_fail_cleanly "too deep" nbdkit -U - "$QED_PLUGIN" file=img40.qed --run true
}

@test "qed corrupt: bad L2 entries fail the read that meets them, not the server" {
  l2=$(peek disk.qed 65536 Q)           # L1 entry 0
  test "$l2" -gt 0
  poke disk.qed $((l2 + 8)) Q 12345     # cluster 1: unaligned
  poke disk.qed $((l2 + 16)) Q 0        # fine
  serve_qed "$BATS_TEST_TMPDIR/s" disk.qed readonly=true
  uri="$(nbd_uri "$BATS_TEST_TMPDIR/s")"
  # Cluster 0 still reads; cluster 1 fails with EIO.
  qemu-io -f raw -r -c "read -P 0x11 0 64k" "$uri"
  run qemu-io -f raw -r -c "read 64k 64k" "$uri"
  grep -qi "error" <<<"$output"
  grep -q "L2 entry 1 .*= 12345" "$BATS_TEST_TMPDIR/s.log"
  # The server is still serving.
  qemu-io -f raw -r -c "read -P 0x22 32M 64k" "$uri"
}

@test "qed corrupt: L1 entry past EOF fails reads there" {
  poke disk.qed $((65536 + 8 * 1)) Q $((1 << 40))
  poke disk.qed $((65536)) Q 3          # and an unaligned one
  serve_qed "$BATS_TEST_TMPDIR/s" disk.qed readonly=true
  run nbdcopy "$(nbd_uri "$BATS_TEST_TMPDIR/s")" out.raw
  test "$status" -ne 0
  grep -q "L1 entry 0 .*= 3" "$BATS_TEST_TMPDIR/s.log"
}

@test "qed corrupt: bad parameters" {
  expect_fail_cleanly "file=" nbdkit -U - "$QED_PLUGIN" --run true
  expect_fail_cleanly "missing.qed" nbdkit -U - "$QED_PLUGIN" file=missing.qed --run true
  expect_fail_cleanly "check=maybe" nbdkit -U - "$QED_PLUGIN" file=disk.qed check=maybe --run true
  expect_fail_cleanly "l2-cache-size" nbdkit -U - "$QED_PLUGIN" file=disk.qed l2-cache-size=100 --run true
  expect_fail_cleanly "unknown parameter" nbdkit -U - "$QED_PLUGIN" file=disk.qed foo=bar --run true
}

@test "qed corrupt: nothing is written to an image that failed validation" {
  poke disk.qed 8 I 3
  serve_refused "table_size=3"          # which compares the bytes
}
