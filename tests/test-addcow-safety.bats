#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Safe defaults of the add-cow filter: a temporary NBD socket is never
# recorded as the backing (the sidecar could not be reopened), and a
# sidecar reused over a plugin that kept nothing (memory) is warned
# about at startup.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 5
}

@test "addcow safety: a temporary socket (nbdkit -U -) is refused as backing, by the filter and by qad-img" {
  truncate -s 1M disk.raw
  # The inner server's $uri is nbd+unix://?socket=$TMPDIR/nbdkitXXXXXX/socket.
  run nbdkit -U - file base.img --run '
    nbdkit -U - --filter="'"$ADDCOW_FILTER"'" file disk.raw \
      addcow=disk.add-cow addcow-backing="$uri" --run "nbdinfo --size \$uri"'
  test "$status" -ne 0
  grep -q "nbd+unix://?socket=.*/nbdkit....../socket: a temporary socket" <<<"$output"
  test ! -e disk.add-cow
  run nbdkit -U - file base.img --run '"'"$QAD_IMG"'" create -f add-cow a.add-cow --image=disk.raw -b "$uri"'
  test "$status" -ne 0
  grep -q "^qad-img: nbd+unix://?socket=.*/nbdkit....../socket: a temporary socket" <<<"$output"
  test ! -e a.add-cow
  # A socket path of one's own is recorded and reopens.
  start_nbdkit "$BATS_TEST_TMPDIR/b" -r file base.img
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw \
    -b "nbd+unix:///?socket=$BATS_TEST_TMPDIR/b" >/dev/null
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" file disk.raw addcow=a.add-cow
  nbdsh -u "$(nbd_uri "$BATS_TEST_TMPDIR/s")" -c 'assert h.pread(4096, 0) == open("base.img", "rb").read(4096)'
}

@test "addcow safety: a sidecar reused over the memory plugin is warned about in one line" {
  requires_nbdsh
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" memory 1M \
    addcow=scratch.add-cow addcow-image=scratch addcow-backing=base.img
  nbdsh_on "$BATS_TEST_TMPDIR/s" 'h.pwrite(b"w" * 65536, 0); h.flush()'
  stop_nbdkit "$BATS_TEST_TMPDIR/s"
  (! grep -q warning "$BATS_TEST_TMPDIR/s.log")
  # Restarted: the memory plugin kept nothing, the sidecar says cluster 0.
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" memory 1M \
    addcow=scratch.add-cow addcow-image=scratch
  test "$(grep -c "^nbdkit: addcow: warning: .*scratch.add-cow says 1 clusters are in the image, but the plugin holds nothing there" "$BATS_TEST_TMPDIR/s.log")" -eq 1
  stop_nbdkit "$BATS_TEST_TMPDIR/s"
  # The file plugin keeps its data: no warning.
  truncate -s 1M disk.raw
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.pwrite(b"w" * 65536, 0); h.flush()'
  stop_nbdkit s
  start_addcow s
  (! grep -q warning s.log)
}
