#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Formats are never probed, and only the defined values are valid
# (docs/specs/add-cow.txt section 4): the filter and qad-img apply one
# policy (common/addcow) and agree on what they accept.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires qemu-img --version
  cd "$BATS_TEST_TMPDIR"
}

@test "addcow formats: a qcow2 backing without a format is refused, not recorded as raw" {
  qemu-img create -q -f qcow2 base.qcow2 1M
  truncate -s 1M disk.raw
  run nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow addcow-backing=base.qcow2 --run true
  [ "$status" -ne 0 ]
  [[ "$output" == *"base.qcow2: the backing file starts with a qcow2 header"*"addcow-backing-format=raw"* ]]
  [ ! -e disk.add-cow ]
  run "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=base.qcow2
  [ "$status" -ne 0 ]
  [[ "$output" == *"starts with a qcow2 header"*"--backing-format=raw"* ]]
  [ ! -e disk.add-cow ]
  # Said explicitly, raw is what the user asked for.
  "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=base.qcow2 --backing-format=raw
}

@test "addcow formats: a QED backing needs its format said" {
  qemu-img create -q -f qed base.qed 1M
  truncate -s 1M disk.raw
  run "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=base.qed
  [ "$status" -ne 0 ]
  [[ "$output" == *"starts with a QED header"*"--backing-format=qed"* ]]
}

@test "addcow formats: an undefined format in a header is refused alike by the filter, info and check" {
  truncate -s 1M base.raw disk.raw
  "$QAD_IMG" create --format=add-cow disk.add-cow --image=disk.raw \
    --backing=base.raw --backing-format=raw
  # Rewrite the recorded backing format "raw" (bytes 44..) as "qcow".
  printf 'qcow' | dd of=disk.add-cow bs=1 seek=44 conv=notrunc status=none
  refused disk.add-cow 'backing file format "qcow" is not defined' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow --run true
  refused disk.add-cow 'backing file format "qcow" is not defined' \
    "$QAD_IMG" check disk.add-cow
  refused disk.add-cow 'disk.add-cow' "$QAD_IMG" info disk.add-cow
}
