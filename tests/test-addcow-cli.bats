#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img create / info / check [--repair] / map for add-cow, and
# interplay with the filter (a sidecar made by the tool is served by
# the filter and vice versa).

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 71
}

@test "addcow cli: create sizes the image from the backing, records names and formats" {
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.img
  [ "$(stat -c %s d.raw)" = $((1024 * 1024)) ]
  [ "$(stat -c %s d.add-cow)" = $((65536 * 2)) ]
  run "$QAD_IMG" info d.add-cow --json
  echo "$output"
  [[ "$output" =~ \"format\":\ \"add-cow\" ]]
  [[ "$output" =~ \"image-filename\":\ \"d.raw\" ]]
  [[ "$output" =~ \"backing-filename\":\ \"base.img\" ]]
  [[ "$output" =~ \"backing-format\":\ \"raw\" ]]
  [[ "$output" =~ \"clusters\":\ 16 ]]
  [[ "$output" =~ \"clusters-in-image\":\ 0 ]]
  run "$QAD_IMG" check d.add-cow
  [ "$status" -eq 0 ]
}

@test "addcow cli: --size grows an existing image, never shrinks it; cluster size" {
  truncate -s 100K d.raw
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --size=2M \
    --cluster-size=4K
  [ "$(stat -c %s d.raw)" = $((2 * 1024 * 1024)) ]
  [ "$(stat -c %s d.add-cow)" = $((4096 * 2)) ]
  expect_fail_cleanly 'refusing to shrink' \
    "$QAD_IMG" create --format=add-cow e.add-cow --image=d.raw --size=1M
  expect_fail_cleanly 'already exists' \
    "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw
  expect_fail_cleanly 'cluster-size=3000: must be a power of 2' \
    "$QAD_IMG" create --format=add-cow f.add-cow --image=f.raw --size=1M \
      --cluster-size=3000
  expect_fail_cleanly 'starts with a QED header; formats are never probed' \
    bash -c "printf 'QED\\0' > q.img; '$QAD_IMG' create --format=add-cow g.add-cow --image=g.raw --backing=q.img --size=1M"
}

@test "addcow cli: a sidecar made by the tool is served by the filter; map follows writes" {
  requires_addcow
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.img
  start_nbdkit s --filter="$ADDCOW_FILTER" file d.raw addcow=d.add-cow
  nbdsh_on s 'h.pwrite(b"x", 3 * 65536 + 1); h.pwrite(b"y" * 65536 * 2, 8 * 65536)'
  stop_nbdkit s
  # qemu-img map's layout: data ranges, in the file that holds them
  # (base.img is random data, so its ranges are data too).
  run "$QAD_IMG" map d.add-cow
  echo "$output"
  [ "${lines[1]}" = "0               0x30000         0               ./base.img" ]
  [ "${lines[2]}" = "0x30000         0x10000         0x30000         ./d.raw" ]
  [ "${lines[3]}" = "0x40000         0x40000         0x40000         ./base.img" ]
  [ "${lines[4]}" = "0x80000         0x20000         0x80000         ./d.raw" ]
  [ "${lines[5]}" = "0xa0000         0x60000         0xa0000         ./base.img" ]
  run "$QAD_IMG" map --json d.add-cow
  [[ "$output" =~ \{\ \"start\":\ 196608,\ \"length\":\ 65536,\ \"depth\":\ 0,\ \"present\":\ true,\ \"zero\":\ false,\ \"data\":\ true,\ \"offset\":\ 196608,\ \"source\":\ \"image\"\} ]]
  run "$QAD_IMG" info d.add-cow
  [[ "$output" =~ in\ the\ image:\ +3 ]]
}

@test "addcow cli: check finds bits past the end and repairs them; sets ALL_ALLOCATED" {
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.img
  python3 -c 'f = open("d.add-cow", "r+b"); f.seek(65536); f.write(b"\xff\xff\x01")'
  run "$QAD_IMG" check d.add-cow
  echo "$output"
  [ "$status" -eq 2 ]
  [[ "$output" =~ 1\ bit\(s\)\ set\ past\ the\ end ]]
  [[ "$output" =~ every\ cluster\ is\ in\ the\ image\ but\ ALL_ALLOCATED\ is\ not\ set ]]
  run "$QAD_IMG" check --repair d.add-cow
  echo "$output"
  [ "$status" -eq 0 ]
  [[ "$output" =~ ALL_ALLOCATED\ set\ \(repaired\) ]]
  run "$QAD_IMG" check --json d.add-cow
  [ "$status" -eq 0 ]
  [[ "$output" =~ \"all-allocated\":\ true ]]
  [[ "$output" =~ \"clusters-in-image\":\ 16 ]]
}

@test "addcow cli: check reports a missing backing file, a missing image and a truncated bitmap" {
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.img
  mv base.img elsewhere.img
  run "$QAD_IMG" check d.add-cow
  [ "$status" -eq 2 ]
  [[ "$output" =~ d.add-cow:\ backing\ file\ .*base.img:\ No\ such\ file ]]
  mv elsewhere.img base.img
  truncate -s 64G d.raw    # needs 2 clusters of bitmap, has 1
  run "$QAD_IMG" check --repair d.add-cow
  [ "$status" -eq 2 ]
  [[ "$output" =~ bitmap\ truncated ]]
  rm d.raw
  run "$QAD_IMG" check d.add-cow
  [ "$status" -eq 2 ]
  [[ "$output" =~ image\ file\ .*d.raw ]]
}

@test "addcow cli: a fresh sidecar (made by the filter, never connected) is valid; --repair sizes it" {
  requires_addcow
  truncate -s 1M d.raw
  nbdkit -U - --filter="$ADDCOW_FILTER" file d.raw addcow=d.add-cow \
    addcow-backing=base.img --run true
  [ "$(stat -c %s d.add-cow)" = 65536 ]
  run "$QAD_IMG" info --json d.add-cow
  [[ "$output" =~ \"fresh\":\ true ]]
  "$QAD_IMG" check d.add-cow
  "$QAD_IMG" check --repair d.add-cow
  [ "$(stat -c %s d.add-cow)" = $((65536 * 2)) ]
}

@test "addcow cli: corrupt headers are refused by every verb with file, field and value" {
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.img
  poke d.add-cow 20 I 40
  for verb in info check map; do
    expect_fail_cleanly 'd.add-cow: add-cow header: cluster_bits is 40' \
      "$QAD_IMG" "$verb" d.add-cow
  done
}

@test "addcow cli: create over a QED backing takes its virtual size; the filter serves it" {
  requires qemu-img --version
  requires_addcow
  qemu-img create -q -f qed -b base.img -F raw base.qed 3M
  "$QAD_IMG" create --format=add-cow d.add-cow --image=d.raw --backing=base.qed \
    --backing-format=qed
  [ "$(stat -c %s d.raw)" = $((3 * 1024 * 1024)) ]
  reference_of base.img 3M ref.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" file d.raw addcow=d.add-cow
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
}
