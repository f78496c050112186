#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Write-path semantics of the QED plugin: zero clusters, fast zero,
# trim, NEED_CHECK handling, the check on open, autoclear bits, locks.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires qemu-io --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
  SOCK="$BATS_TEST_TMPDIR/sock"
  URI="$(nbd_uri "$SOCK")"
}

features () { peek "$1" 16 Q; }

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

@test "qed write: NEED_CHECK is set before allocating and cleared by flush" {
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

@test "qed write: with a backing file NEED_CHECK is never set" {
  requires_nbdsh
  truncate -s 16M base.raw
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 16M
  serve_qed "$SOCK" disk.qed
  nbdsh -u "$URI" -c 'h.pwrite(b"x" * 4096, 0)'
  test $(( $(features disk.qed) & 2 )) -eq 0
}

@test "qed write: NEED_CHECK on open runs the repair (check=auto), leaks reclaimed" {
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

@test "qed write: leaks in the middle are reclaimed by moving clusters down" {
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

@test "qed write: check --repair clears invalid entries and reports data loss" {
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

@test "qed write: locks refuse qemu-img, qemu-nbd and a second nbdkit, and the reverse" {
  requires qemu-nbd --version
  qemu-img create -q -f qed disk.qed 16M
  serve_qed "$SOCK" disk.qed
  run qemu-img info disk.qed
  test "$status" -ne 0
  grep -qi "lock" <<<"$output"
  expect_fail_cleanly "lock.*another process" nbdkit -U - "$QED_PLUGIN" file=disk.qed --run true
  run qemu-nbd -f qed -k "$BATS_TEST_TMPDIR/q.sock" disk.qed
  test "$status" -ne 0
  stop_nbdkit "$SOCK"
  # Backing files are locked shared: readable, not writable by others.
  truncate -s 16M base.raw
  qemu-img create -q -f qed -b base.raw -F raw over.qed 16M
  serve_qed "$SOCK" over.qed
  qemu-img info base.raw >/dev/null
  run qemu-io -f raw -c "write 0 512" base.raw
  grep -qi "lock" <<<"$output"
  stop_nbdkit "$SOCK"
  # Now the other way round: qemu-nbd holds it.
  qemu-nbd -f qed -k "$BATS_TEST_TMPDIR/q.sock" --pid-file="$BATS_TEST_TMPDIR/q.pid" -f qed disk.qed &
  for i in $(seq 50); do test -S "$BATS_TEST_TMPDIR/q.sock" && break; sleep 0.1; done
  echo "$(cat "$BATS_TEST_TMPDIR/q.pid" 2>/dev/null || echo $!)" >> "$BATS_TEST_TMPDIR/.server-pids"
  expect_fail_cleanly "lock" nbdkit -U - "$QED_PLUGIN" file=disk.qed --run true
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
