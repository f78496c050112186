#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The spec against the implementation: an independent reader and
# writer written from docs/specs/add-cow.txt alone (addcow-spec.py).
# The reader reconstructs the disk from the raw image, the backing
# file and the bitmap the filter wrote; the filter serves a sidecar
# the independent writer made (names in other places).

load functions.sh
load addcow-helpers.sh

SPEC="$BATS_TEST_DIRNAME/addcow-spec.py"

setup ()
{
  requires_addcow
  requires_file "$ADDCOW_WORKLOAD"
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((3 * 1024 * 1024)) 91
}

@test "addcow spec: an independent reader reconstructs the disk the filter serves" {
  truncate -s 4M disk.raw
  reference_of base.img 4M ref.raw
  start_addcow s addcow-backing=base.img addcow-cluster-size=4K
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 400 91
  stop_nbdkit s
  python3 "$SPEC" read disk.add-cow rebuilt.raw
  cmp rebuilt.raw ref.raw
}

@test "addcow spec: the filter serves a sidecar written by the independent writer" {
  truncate -s 4M disk.raw
  reference_of base.img 4M ref.raw
  python3 "$SPEC" write disk.add-cow disk.raw 4194304 16 base.img raw
  "$QAD_IMG" check disk.add-cow
  start_addcow s
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 300 92
  stop_nbdkit s
  python3 "$SPEC" read disk.add-cow rebuilt.raw
  cmp rebuilt.raw ref.raw
}

@test "addcow spec: ALL_ALLOCATED on a foreign-layout sidecar keeps its names in place" {
  truncate -s 1M disk.raw
  python3 "$SPEC" write disk.add-cow disk.raw 1048576 16 base.img raw
  head -c 4096 disk.add-cow > before.hdr
  start_addcow s
  nbdsh_on s 'h.pwrite(b"a" * (1 << 20), 0); h.flush()'
  stop_nbdkit s
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  # Only bytes 32..39 changed in the header.
  cmp -l before.hdr <(head -c 4096 disk.add-cow) | awk '{ print $1 }' | tr '\n' ' ' > changed
  [ "$(cat changed)" = "33 " ]
  "$QAD_IMG" check disk.add-cow
}
