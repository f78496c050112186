#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The image under the filter comes from any plugin, and the backing
# can be a raw file, an NBD URI (another nbdkit), or a QED image.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_file "$ADDCOW_WORKLOAD"
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((3 * 1024 * 1024)) 41
  truncate -s 4M disk.raw
  reference_of base.img 4M ref.raw
}

@test "addcow stacking: backing is an NBD URI served by another nbdkit" {
  start_nbdkit b -r file base.img
  start_addcow s addcow-backing="$(nbd_uri "$PWD/b")"
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  # Extents of the NBD backing come through too.
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 41
  stop_nbdkit s
  # The URI is recorded as is (not as a file name).
  grep -q "nbd+unix:///?socket=$PWD/b" disk.add-cow
  start_addcow s
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow stacking: NBD backing format must be raw" {
  start_nbdkit b -r file base.img
  expect_fail_cleanly 'an NBD backing .* must have format raw, not qed' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw addcow=disk.add-cow \
      addcow-backing="$(nbd_uri "$PWD/b")" addcow-backing-format=qed --run true
}

@test "addcow stacking: the image comes from the memory plugin" {
  start_nbdkit s --filter="$ADDCOW_FILTER" memory 4M addcow=m.add-cow \
    addcow-image=scratch addcow-backing=base.img
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 42
  [ "$(dd if=m.add-cow bs=1 skip=84 count=7 status=none)" = scratch ]
}

@test "addcow stacking: the image comes from the nbd plugin (a remote raw disk)" {
  start_nbdkit img file disk.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" nbd socket="$PWD/img" \
    addcow=disk.add-cow addcow-image=disk.raw addcow-backing=base.img
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 43
  stop_nbdkit s
  stop_nbdkit img
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow stacking: under another filter (--filter=addcow --filter=blocksize)" {
  start_nbdkit s --filter="$ADDCOW_FILTER" --filter=blocksize file disk.raw \
    addcow=disk.add-cow addcow-backing=base.img minblock=4096
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 44
  stop_nbdkit s
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow stacking: QED backing file (with its own raw backing)" {
  requires qemu-img --version
  qemu-img create -q -f qed -b base.img -F raw base.qed 4M
  qemu-io -f qed -c 'write -P 0x5a 1M 128K' base.qed >/dev/null
  reference_of base.img 4M ref.raw
  python3 -c 'f = open("ref.raw", "r+b"); f.seek(1 << 20); f.write(b"\x5a" * 131072)'
  start_addcow s addcow-backing=base.qed addcow-backing-format=qed
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  # Extents: the QED image's allocated cluster and its backing's data.
  run nbdinfo --map "$(nbd_uri s)"
  echo "$output"
  [[ "${lines[0]}" =~ ^\ +0\ +3145728\ +0\ +data ]]
  [[ "${lines[1]}" =~ ^\ +3145728\ +1048576\ +3\ +hole,zero ]]
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 45
  stop_nbdkit s
  start_addcow s
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow stacking: a QED backing without an explicit format is refused, not probed" {
  requires qemu-img --version
  qemu-img create -q -f qed base.qed 4M
  expect_fail_cleanly 'starts with a QED header; formats are never probed' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw addcow=disk.add-cow \
      addcow-backing=base.qed --run true
}
