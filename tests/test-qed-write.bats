#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Write-path semantics of the QED plugin: zero clusters, fast zero,
# trim, autoclear and compat bits on a read-write open.

load functions.sh
load qed-helpers.sh

setup () { qed_server_setup; }

@test "qed write: partial write to a zero cluster fills with zeroes, not backing data" {
  qemu-io -f raw -c "write -P 0xbb 0 1M" -c "" base.raw >/dev/null 2>&1 ||
    { truncate -s 1M base.raw; qemu-io -f raw -c "write -P 0xbb 0 1M" base.raw >/dev/null; }
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 1M
  cp disk.qed qemu.qed
  serve_qed "$SOCK" disk.qed
  qemu-io -f raw -c "write -z 0 64k" -c "write -P 0x11 1024 512" "$URI" >/dev/null
  # The rest of the cluster is zero, the next cluster still backing.
  qemu-io -f raw -c "read -P 0 0 1024" -c "read -P 0x11 1024 512" \
    -c "read -P 0 1536 64000" -c "read -P 0xbb 64k 64k" "$URI" | grep -v "^read\|ops" | (! grep .)
  stop_nbdkit "$SOCK"
  # QEMU 7.2 differs (fills from the backing file): recorded, not required.
  qemu-io -f qed -c "write -z 0 64k" -c "write -P 0x11 1024 512" qemu.qed >/dev/null
  if qemu-io -f qed -c "read -P 0xbb 0 1024" qemu.qed | grep -q "Pattern verification failed"; then
    echo "# qemu-io now fills zero clusters with zeroes too" >&3
  fi
  qemu-img check disk.qed
}

@test "qed write: whole-cluster zero writes allocate no data" {
  qemu-img create -q -f qed disk.qed 64M
  truncate -s 64M base.raw
  qemu-img create -q -f qed -b base.raw -F raw over.qed 64M
  serve_qed "$SOCK" disk.qed
  qemu-io -f raw -c "write -z 0 32M" "$URI" >/dev/null
  stop_nbdkit "$SOCK"
  # No backing file: unallocated already reads zero; nothing written.
  test "$(stat -c %s disk.qed)" -eq $((64 * 1024 + 256 * 1024))
  serve_qed "$SOCK" over.qed
  qemu-io -f raw -c "write -z 0 32M" "$URI" >/dev/null
  stop_nbdkit "$SOCK"
  # Over a backing file: one L2 table of zero entries, no data.
  test "$(stat -c %s over.qed)" -eq $((64 * 1024 + 2 * 256 * 1024))
  qemu-img map --output=json over.qed | grep -q '"start": 0, "length": 33554432, "depth": 0, "present": true, "zero": true, "data": false'
}

@test "qed write: fast zero fails with ENOTSUP only when data must be written" {
  requires_nbdsh
  random_file base.raw $((4 * 1024 * 1024))
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 4M
  serve_qed "$SOCK" disk.qed
  nbdsh -u "$URI" -c '
import errno
assert h.can_fast_zero()
# Whole clusters: metadata only, so fast zero succeeds.
h.zero(65536, 0, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(65536, 0) == bytes(65536)
# A partial cluster over backing data would need a data write.
try:
    h.zero(512, 131072 + 512, nbd.CMD_FLAG_FAST_ZERO)
    assert False, "fast zero should have failed"
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
# Without the flag it works.
h.zero(512, 131072 + 512)
assert h.pread(512, 131072 + 512) == bytes(512)
'
}

@test "qed write: trim reads back zeroes, also over a backing file, and frees space" {
  random_file base.raw $((8 * 1024 * 1024))
  qemu-img create -q -f qed -b base.raw -F raw over.qed 8M
  qemu-img create -q -f qed disk.qed 8M
  for img in over.qed disk.qed; do
    serve_qed "$SOCK" $img
    qemu-io -f raw -c "write -P 0x33 0 4M" -c flush "$URI" >/dev/null
    before=$(du -k $img | cut -f1)
    qemu-io -f raw -c "discard 0 2M" -c "discard 6M 1M" "$URI" >/dev/null
    qemu-io -f raw -c "read -P 0 0 2M" -c "read -P 0x33 2M 2M" \
      -c "read -P 0 6M 1M" "$URI" | (! grep -q "failed")
    stop_nbdkit "$SOCK"
    after=$(du -k $img | cut -f1)
    test "$after" -lt "$before"
    qemu-img check $img
  done
}

@test "qed write: trimming the partial last cluster over a backing file reads zeroes (bug 4)" {
  requires_nbdsh
  # 1M + 4K: the last 64K cluster is only 4K long.
  random_file base.raw $((1024 * 1024 + 4096)) 7
  qemu-img create -q -f qed -b base.raw -F raw disk.qed $((1024 * 1024 + 4096))
  serve_qed "$SOCK" disk.qed
  nbdsh -u "$URI" -c '
size = h.get_size()
assert size == (1 << 20) + 4096
assert h.pread(4096, 1 << 20) != bytes(4096)      # backing data
h.trim(4096, 1 << 20)                             # the partial last cluster
assert h.pread(4096, 1 << 20) == bytes(4096), "trimmed tail shows backing data"
assert h.pread(65536, (1 << 20) - 65536) != bytes(65536) # cluster 15 kept
# Allocated now: trimming punches it, and it still reads zeroes.
h.pwrite(b"\x55" * 4096, 1 << 20)
h.trim(4096, 1 << 20)
assert h.pread(4096, 1 << 20) == bytes(4096)
'
  stop_nbdkit "$SOCK"
  qemu-io -f qed -r -c "read -P 0 1M 4k" disk.qed | (! grep -q "failed")
  qemu-img check disk.qed
}

@test "qed write: unknown autoclear bits are cleared on a read-write open only" {
  qemu-img create -q -f qed disk.qed 16M
  poke disk.qed 32 Q 0x80
  serve_qed "$SOCK" disk.qed readonly=true
  stop_nbdkit "$SOCK"
  test "$(peek disk.qed 32 Q)" -eq $((0x80))
  serve_qed "$SOCK" disk.qed
  stop_nbdkit "$SOCK"
  test "$(peek disk.qed 32 Q)" -eq 0
}

@test "qed write: unknown compat bits are ignored and kept" {
  qemu-img create -q -f qed disk.qed 16M
  poke disk.qed 24 Q 0x10
  serve_qed "$SOCK" disk.qed
  qemu-io -f raw -c "write -P 1 0 64k" "$URI" >/dev/null
  stop_nbdkit "$SOCK"
  test "$(peek disk.qed 24 Q)" -eq $((0x10))
}

@test "qed write: after a random workload qemu-img check finds no leaks" {
  qemu-img create -q -f qed disk.qed 32M
  qemu_io_script 99 $((32 * 1024 * 1024)) 65536 300 discard > script
  serve_qed "$SOCK" disk.qed
  run_qemu_io raw "$URI" script
  stop_nbdkit "$SOCK"
  run qemu-img check --output=json disk.qed
  echo "$output"
  test "$status" -eq 0
  (! grep -q '"leaks"' <<<"$output") || grep -q '"leaks": 0' <<<"$output"
}
