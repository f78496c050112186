#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Locking of QED images while served, against QEMU's tools and a
# second nbdkit.

load functions.sh
load qed-helpers.sh

setup () { qed_server_setup; }

@test "qed lock: locks refuse qemu-img, qemu-nbd and a second nbdkit, and the reverse" {
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
