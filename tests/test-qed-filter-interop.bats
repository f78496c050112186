#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The qed filter against QEMU: QED images made by qemu-img and filled
# by qemu-io (patterns, zero clusters, partial-cluster writes) for
# cluster sizes 4K..2M and table sizes 1, 4, 16, read through
# "nbdkit curl URL --filter=qed" from a real web server (lighttpd on
# 127.0.0.1), through the nbd plugin and through the file plugin.  The
# bytes must equal "qemu-img convert -O raw" and the maps "qemu-img
# map" of the image.  Backing chains (raw, QED, three files) are read
# through qed-backing= as a URL, an NBD URI and a local file.
#
# Geometries QEMU 7.2 cannot open (see test-qed-interop.bats) are
# filled through our plugin, which is then the reference.

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh

setup ()
{
  requires qemu-img --version
  requires qemu-io --version
  requires nbdcopy --version
  requires_file "$QED_PLUGIN"
  requires_qed_filter
  requires_web
  cd "$BATS_TEST_TMPDIR"
}

SIZE=$((4 * 1024 * 1024))

# make_image CS TS SEED [CREATE_ARGS...]: disk.qed filled by a random
# qemu-io script, expected.raw and expected.map its guest view.
make_image ()
{
  local cs="$1" ts="$2" seed="$3"; shift 3
  qemu_io_script "$seed" $SIZE "$cs" 30 > script
  LOOSE_HOST_ZERO=
  if qemu-img create -q -f qed -o cluster_size=$cs,table_size=$ts \
       "$@" disk.qed $SIZE 2>/dev/null && qemu_opens disk.qed; then
    run_qemu_io qed disk.qed script
    qemu-img convert -O raw disk.qed expected.raw
    map_of disk.qed qed > expected.map
  else
    rm -f disk.qed
    LOOSE_HOST_ZERO=1           # the plugin zeroes in place
    "$QAD_IMG" create disk.qed $SIZE --cluster-size=$cs --table-size=$ts \
      >/dev/null
    local sock="$BATS_TEST_TMPDIR/plugin.sock"
    serve_qed "$sock" disk.qed
    run_qemu_io raw "$(nbd_uri "$sock")" script
    stop_nbdkit "$sock"
    serve_qed "$sock" disk.qed readonly=true
    nbdcopy "$(nbd_uri "$sock")" expected.raw
    map_of "$(nbd_uri "$sock")" raw > expected.map
    stop_nbdkit "$sock"
  fi
}

# over_three CS TS SEED: one geometry through curl, nbd and file.
over_three ()
{
  local cs="$1" ts="$2" seed="$3"
  mkdir "g-$cs-$ts" && cd "g-$cs-$ts"
  make_image "$cs" "$ts" "$seed"
  local before
  before="$(md5sum < disk.qed)"
  start_web_server .
  # curl has no extents: it cannot see holes punched in the file.
  without_host_zero expected.map > expected-curl.map
  filter_check expected.raw expected-curl.map curl "$WEB_URL/disk.qed"
  filter_check expected.raw expected.map file disk.qed
  local inner="$BATS_TEST_TMPDIR/inner-$cs-$ts.sock"
  start_nbdkit "$inner" -r file disk.qed
  filter_check expected.raw expected.map nbd socket="$inner"
  stop_nbdkit "$inner"
  stop_web_server
  # Never modified by any of it.
  test "$(md5sum < disk.qed)" = "$before"
  cd ..
}

@test "qed filter interop: 4K clusters, tables 1/4/16" {
  over_three 4096 1 1; over_three 4096 4 2; over_three 4096 16 3
}
@test "qed filter interop: 64K clusters, tables 1/4/16" {
  over_three 65536 1 4; over_three 65536 4 5; over_three 65536 16 6
}
@test "qed filter interop: 1M clusters, tables 1/4/16" {
  over_three 1048576 1 7; over_three 1048576 4 8; over_three 1048576 16 9
}
@test "qed filter interop: 2M clusters, tables 1/4/16" {
  over_three 2097152 1 10; over_three 2097152 4 11; over_three 2097152 16 12
}

@test "qed filter interop: raw backing over HTTP" {
  random_file base.raw $((SIZE * 3 / 4)) 7
  make_image 65536 4 13 -b base.raw -F raw
  start_web_server .
  filter_check expected.raw expected.map \
    curl "$WEB_URL/disk.qed" qed-backing="$WEB_URL/base.raw"
  # The same, with the backing as a local file.
  filter_check expected.raw expected.map \
    curl "$WEB_URL/disk.qed" qed-backing=base.raw
}

@test "qed filter interop: QED backing over NBD" {
  qemu-img create -q -f qed base.qed $SIZE
  qemu-io -f qed -c "write -P 0x5a 0 1M" -c "write -z 2M 64k" \
    -c "write -P 0x5b 3M 100k" base.qed >/dev/null
  make_image 4096 4 14 -b base.qed -F qed
  start_web_server .
  local inner="$BATS_TEST_TMPDIR/base.sock"
  start_nbdkit "$inner" -r file base.qed
  filter_check expected.raw expected.map \
    curl "$WEB_URL/disk.qed" qed-backing="$(nbd_uri "$inner")"
}

@test "qed filter interop: chain of three, one qed-backing= per file" {
  random_file base.raw $((SIZE / 2)) 9
  qemu-img create -q -f qed -b base.raw -F raw mid.qed $SIZE
  qemu-io -f qed -c "write -P 0x6c 1M 1M" -c "write -z 3M 512k" \
    -c "write -P 0x6d $((SIZE / 2 - 1000)) 5000" mid.qed >/dev/null
  make_image 65536 16 15 -b mid.qed -F qed
  start_web_server .
  filter_check expected.raw expected.map curl "$WEB_URL/disk.qed" \
    qed-backing="$WEB_URL/mid.qed" qed-backing="$WEB_URL/base.raw"
}

@test "qed filter interop: backing file without qed-backing= is refused" {
  truncate -s 1M base.raw
  qemu-img create -q -f qed -b base.raw -F raw disk.qed 1M
  expect_fail_cleanly \
    'has a backing file "base.raw": give qed-backing=' \
    nbdkit -U - --filter="$QED_FILTER" file disk.qed --run 'nbdinfo "$uri"'
  # A qed-backing= with nothing to use it is a mistake too.
  truncate -s 1M plain.raw
  qemu-img create -q -f qed plain.qed 1M
  expect_fail_cleanly 'qed-backing=.*was given, but the backing chain has only 0 files' \
    nbdkit -U - --filter="$QED_FILTER" file plain.qed qed-backing=plain.raw \
      --run 'nbdinfo "$uri"'
}
