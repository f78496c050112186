#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The nbdkit debug flags of each object (-D NAME.FLAG=1, documented
# under DEBUG FLAGS in each man page) and the one-line summary each
# object logs under -v when it opens an image.  Each flag is tested
# by running the same requests with and without it: the flag's lines
# appear with it and only with it.

load functions.sh

QED_FILTER="$abs_top_builddir/qed-filter.so"

setup ()
{
  requires_file "$QAD_IMG"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

# io SOCKET PYTHON: run nbdsh commands (handle "h") on the server.
io () { nbdsh -u "$(nbd_uri "$1")" -c "$2"; }

@test "debug flags: -D qed.map=1 logs how each read maps onto the QED image" {
  requires_file "$QED_PLUGIN"
  truncate -s 1M base.raw
  "$QAD_IMG" create overlay.qed --backing=base.raw --backing-format=raw >/dev/null
  for flag in with without; do
    args=(-v)
    test $flag = with && args+=(-D qed.map=1)
    start_nbdkit $flag "${args[@]}" "$QED_PLUGIN" file=overlay.qed
    io $flag 'h.pwrite(b"x" * 512, 65536); h.pread(1024, 65000)'
    stop_nbdkit $flag
  done
  grep -q 'qed: map: offset=65000 length=536: backing file$' with.log
  grep -q 'qed: map: offset=65536 length=488: data at file offset [0-9]*$' with.log
  ! grep -q 'qed: map:' without.log
}

@test "debug flags: -D qed.reads=1 logs each read the QED filter sends to the plugin" {
  requires_file "$QED_FILTER"
  "$QAD_IMG" create disk.qed 1M >/dev/null
  for flag in with without; do
    args=(-v -r)
    test $flag = with && args+=(-D qed.reads=1)
    start_nbdkit $flag "${args[@]}" --filter="$QED_FILTER" file disk.qed
    io $flag 'h.pread(4096, 0)'
    stop_nbdkit $flag
  done
  # The header at offset 0, then the L1 table.
  grep -q 'qed: read from the plugin: offset=0 count=' with.log
  test "$(grep -c 'qed: read from the plugin:' with.log)" -ge 2
  ! grep -q 'qed: read from the plugin:' without.log
}

@test "debug flags: -D addcow.copyup=1 logs each cluster copied up" {
  requires_file "$ADDCOW_FILTER"
  truncate -s 1M base.raw
  for flag in with without; do
    truncate -s 1M $flag.raw
    "$QAD_IMG" create -f add-cow $flag.add-cow --image=$flag.raw \
      --backing=base.raw --backing-format=raw >/dev/null
    args=(-v)
    test $flag = with && args+=(-D addcow.copyup=1)
    start_nbdkit $flag "${args[@]}" --filter="$ADDCOW_FILTER" \
      file $flag.raw addcow=$flag.add-cow
    # A partial write to cluster 1 copies it up; a whole cluster does not.
    io $flag 'h.pwrite(b"x" * 512, 65536 + 512); h.pwrite(b"y" * 65536, 131072)'
    stop_nbdkit $flag
  done
  grep -q 'addcow: copy-up of cluster 1 (65536 bytes at 65536)$' with.log
  test "$(grep -c 'addcow: copy-up of' with.log)" -eq 1
  ! grep -q 'addcow: copy-up of' without.log
}

@test "debug flags: -D dirty-bitmap.commit=1 logs each group commit of bits" {
  requires_file "$DIRTY_BITMAP_FILTER"
  for flag in with without; do
    truncate -s 1M $flag.raw
    args=(-v)
    test $flag = with && args+=(-D dirty-bitmap.commit=1)
    start_nbdkit $flag "${args[@]}" --filter="$DIRTY_BITMAP_FILTER" \
      file $flag.raw dirty-bitmap=$flag.qdb
    io $flag 'h.pwrite(b"x" * 512, 0); h.pwrite(b"y" * 512, 524288)'
    stop_nbdkit $flag
  done
  grep -Eq 'dirty-bitmap: commit [0-9]+: [0-9]+ block\(s\) of bits$' with.log
  ! grep -q 'dirty-bitmap: commit ' without.log
  # nbdkit warns about a flag no object reads: there is none here.
  ! grep -q 'was not used\|does not contain' with.log
}

@test "verbose: the QED plugin logs a summary of the image it opens" {
  requires_file "$QED_PLUGIN"
  truncate -s 1M base.raw
  "$QAD_IMG" create overlay.qed --backing=base.raw --backing-format=raw \
    --cluster-size=128K >/dev/null
  start_nbdkit v -v "$QED_PLUGIN" file=overlay.qed
  stop_nbdkit v
  grep -Eq "qed: $PWD/overlay.qed: virtual size 1048576, cluster 131072, tables of 4 clusters, backing $PWD/base.raw \(raw\), read-write on the first writable connection$" v.log
  start_nbdkit r -v -r "$QED_PLUGIN" file=overlay.qed readonly=true
  stop_nbdkit r
  grep -q "qed: $PWD/overlay.qed: .*, read-only$" r.log
  start_nbdkit q "$QED_PLUGIN" file=overlay.qed
  ! grep -q "virtual size" q.log
}

@test "verbose: the QED filter logs a summary of each export it opens" {
  requires_file "$QED_FILTER"
  "$QAD_IMG" create disk.qed 2M >/dev/null
  start_nbdkit v -v -r --filter="$QED_FILTER" file disk.qed
  grep -Eq 'qed: export "": virtual size 2097152, cluster 65536, tables of 4 clusters, backing none, [0-9]+ bytes from the plugin$' v.log
}

@test "verbose: the add-cow filter logs a summary of the sidecar it opens" {
  requires_file "$ADDCOW_FILTER"
  truncate -s 1M base.raw disk.raw
  "$QAD_IMG" create -f add-cow disk.add-cow --image=disk.raw \
    --backing=base.raw --backing-format=raw >/dev/null
  start_nbdkit v -v --filter="$ADDCOW_FILTER" file disk.raw addcow=disk.add-cow
  grep -Eq "addcow: $PWD/disk.add-cow: disk 1048576 bytes, 16 clusters of 65536, 0 in the image, backing base.raw; bits persisted " v.log
}

@test "verbose: the dirty-bitmap filter logs a summary of the QDB file it opens" {
  requires_file "$DIRTY_BITMAP_FILTER"
  truncate -s 1M disk.raw
  start_nbdkit v -v --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb dirty-bitmap-name=b1 dirty-bitmap-name=b2
  grep -Eq "dirty-bitmap: $PWD/disk.qdb: 2 bitmap\(s\), 2 enabled, disk of 1048576 bytes, tracking strict$" v.log
}
