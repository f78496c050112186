#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Simulated power cuts of the add-cow filter over nbdkit's file plugin
# (tests/powercut/): in every crash state the sidecar passes the check
# and every flushed or FUA write reads back (bit 1: the raw image, bit
# 0: the backing file).  Also over a plugin without multi-conn, where
# a flush covers only the writes of its own connection.  The checker must catch flushes that are
# thrown away (nbdkit's fua filter with fuamode=discard on top).

load functions.sh
load powercut/powercut.sh

teardown () { pc_teardown; }

setup ()
{
  requires_file "$ADDCOW_FILTER"
  pc_requires
  pc_random live/base.raw $((PC_SIZE * 3 / 4)) 3
  truncate -s $PC_SIZE live/disk.raw
}

@test "powercut addcow: over the file plugin, raw backing file" {
  pc_record_nbdkit addcow
  pc_check addcow
  test "$status" -eq 0
  pc_samples addcow
}

# addcow-local-image=: the filter writes and syncs the image itself,
# and reads the backing through the file plugin below.
@test "powercut addcow: addcow-local-image=, the plugin below as the backing" {
  export PC_ADDCOW_LOCAL=1
  pc_record_nbdkit addcow
  pc_check addcow
  test "$status" -eq 0
  pc_samples addcow
}

# The sidecar is made by the recorded server (temporary file, fsync,
# link, fsync of the directory): a crash at any point of it leaves
# either no sidecar or a valid one.
@test "powercut addcow: the server creates the sidecar" {
  pc_record_fresh addcow
  pc_check addcow 1000
  test "$status" -eq 0
}

# multi-conn-track-dirty=off: with its default (connection), nbdkit
# 1.32's multi-conn filter loses flushes by itself, and this test saw
# it: after a flush on connection A returns, it marks every connection
# clean, including B, whose write completed while A's fdatasync ran;
# B's flush is then skipped and acknowledged with no fdatasync after
# B's write.
@test "powercut addcow: over a plugin without multi-conn" {
  requires_filter multi-conn
  PC_INNER=--filter=multi-conn \
  PC_PARAMS="multi-conn-mode=disable multi-conn-track-dirty=off" \
    pc_record_nbdkit addcow
  pc_check addcow
  test "$status" -eq 0
}

@test "powercut addcow: the checker catches discarded flushes" {
  requires_filter fua
  PC_FILTERS=--filter=fua PC_PARAMS=fuamode=discard pc_record_nbdkit addcow
  pc_check addcow 500
  pc_expect_caught
}
