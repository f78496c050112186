#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter stacked over different plugins and filters: the
# file plugin, the memory plugin, the QED plugin, the add-cow filter.
# In each case random writes go through, the data read back is right,
# and the persisted bitmap equals the touched granules.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

W () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" "$@"; }

# workload_and_check ARGS...: serve ARGS under the filter, run a
# workload, check the data against a shadow copy kept by a second
# identical workload on a plain memory disk, and the bitmap.  No trims
# here: after a trim the contents are unspecified by NBD, so they may
# legitimately differ between plugins.
workload_and_check ()
{
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" "$@" \
    dirty-bitmap=disk.qdb dirty-bitmap-name=s dirty-bitmap-granularity=16K
  start_nbdkit ref memory 16M
  W run "$(nbd_uri sock)" 9 200 a.log 200000 wwwz
  W run "$(nbd_uri ref)" 9 200 b.log 200000 wwwz
  nbdcopy "$(nbd_uri sock)" got.raw
  nbdcopy "$(nbd_uri ref)" want.raw
  stop_nbdkit sock
  cmp got.raw want.raw
  W expect 16384 a.log > want-s
  W compare disk.qdb s want-s
}

@test "dirty-bitmap stacking: over the file plugin" {
  truncate -s 16M disk.raw
  workload_and_check file disk.raw
}

@test "dirty-bitmap stacking: over the memory plugin" {
  workload_and_check memory 16M
}

@test "dirty-bitmap stacking: over the QED plugin" {
  requires_file "$QED_PLUGIN"
  "$QAD_IMG" create disk.qed 16M
  workload_and_check "$QED_PLUGIN" file=disk.qed
  "$QAD_IMG" check disk.qed
}

@test "dirty-bitmap stacking: above the add-cow filter" {
  requires_file "$ADDCOW_FILTER"
  head -c 16M /dev/zero > base.img
  truncate -s 16M disk.raw
  workload_and_check --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow addcow-backing=base.img
}

@test "dirty-bitmap stacking: below the add-cow filter (tracks the raw image)" {
  requires_file "$ADDCOW_FILTER"
  head -c 16M /dev/urandom > base.img
  truncate -s 16M disk.raw
  start_nbdkit sock --filter="$ADDCOW_FILTER" --filter="$DIRTY_BITMAP_FILTER" \
    file disk.raw addcow=disk.add-cow addcow-backing=base.img \
    dirty-bitmap=disk.qdb dirty-bitmap-name=s dirty-bitmap-granularity=16K
  W run "$(nbd_uri sock)" 4 100 a.log 200000 wwwz
  stop_nbdkit sock
  # add-cow copies whole clusters up into the raw image, so the raw
  # image's bitmap covers at least the granules the client touched.
  W expect 16384 a.log > want-s
  W compare disk.qdb s want-s subset
}
