#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Simulated power cuts of the QED plugin (tests/powercut/): crash
# states built from a recording of the server's writes and syncs must
# reopen without corruption and hold every flushed or FUA write.  The
# same checker must catch a server that never syncs (qemu-nbd
# --cache=unsafe).

load functions.sh
load powercut/powercut.sh

teardown () { pc_teardown; }

setup ()
{
  requires qemu-img --version
  requires_file "$QED_PLUGIN"
  pc_requires
}

@test "powercut qed: 4K clusters, no backing file" {
  qemu-img create -q -f qed -o cluster_size=4096 live/disk.qed $PC_SIZE
  pc_record_nbdkit qed
  pc_check qed
  test "$status" -eq 0
  pc_samples qed
}

@test "powercut qed: 4K clusters, raw backing file" {
  pc_random live/base.raw $((PC_SIZE / 2)) 7
  qemu-img create -q -f qed -o cluster_size=4096 -b base.raw -F raw \
    live/disk.qed $PC_SIZE
  pc_record_nbdkit qed
  pc_check qed
  test "$status" -eq 0
  pc_samples qed
}

# One connection: with several, qemu-nbd 7.2 itself aborts now and then
# (block/qed.c: qed_aio_write_alloc: Assertion `s->allocating_acb ==
# NULL' failed) when allocating writes from different clients meet.
@test "powercut qed: the checker catches a server that never syncs" {
  requires qemu-nbd --version
  qemu-img create -q -f qed -o cluster_size=4096 live/disk.qed $PC_SIZE
  PC_CONNS=1 pc_record qed qemu-nbd --cache=unsafe -f qed -t -e 4 -k "$PWD/rec.sock" \
    live/disk.qed
  pc_check qed 500
  pc_expect_caught
}
