#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Interop matrix: QED images made by qemu-img and filled by qemu-io
# (random patterns, zero writes, partial-cluster writes), for cluster
# sizes 4K, 64K, 1M, 2M and table sizes 1, 4, 16, with no backing
# file, a raw one, a QED one and a chain of three.  What the plugin
# serves must equal "qemu-img convert -O raw" of the image, and the
# allocation maps must agree.
#
# QEMU 7.2 refuses to open some images it creates (table_size 1: "QED
# table offset is invalid"; 2 MiB clusters with 16-cluster tables: its
# size limit wraps).  Those are filled through our plugin instead and
# compared with a raw reference that received the same qemu-io script.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires qemu-io --version
  requires nbdcopy --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
}

SIZE=$((24 * 1024 * 1024))

# make_backing KIND: create the backing chain; print "-b NAME -F FMT".
make_backing ()
{
  case "$1" in
    none) ;;
    raw)
      # 3/4 of the image, with a sparse hole in the middle.
      random_file base.raw $((SIZE * 3 / 4)) 7
      fallocate -p -o $((4 * 1024 * 1024)) -l $((2 * 1024 * 1024)) base.raw
      echo "-b base.raw -F raw" ;;
    qed)
      qemu-img create -q -f qed base.qed $((SIZE / 2))
      qemu-io -f qed -c "write -P 0x5a 0 1M" -c "write -z 2M 64k" \
        -c "write -P 0x5b 3M 100k" base.qed >/dev/null
      echo "-b base.qed -F qed" ;;
    chain3)
      random_file base.raw $((SIZE / 2)) 9
      qemu-img create -q -f qed -b base.raw -F raw mid.qed $SIZE
      qemu-io -f qed -c "write -P 0x6c 1M 1M" -c "write -z 8M 1M" \
        -c "write -P 0x6d $((SIZE / 2 - 1000)) 5000" mid.qed >/dev/null
      echo "-b mid.qed -F qed" ;;
  esac
}

# reference_raw KIND: the guest view of the backing chain, as raw.
reference_raw ()
{
  case "$1" in
    none) truncate -s $SIZE ref.raw ;;
    raw) cp base.raw ref.raw; truncate -s $SIZE ref.raw ;;
    qed) qemu-img convert -O raw base.qed ref.raw; truncate -s $SIZE ref.raw ;;
    chain3) qemu-img convert -O raw mid.qed ref.raw; truncate -s $SIZE ref.raw ;;
  esac
}

interop_case ()
{
  local cs="$1" ts="$2" backing="$3" seed="$4"
  local dir="case-$cs-$ts-$backing"
  mkdir "$dir" && cd "$dir"
  local bargs
  bargs="$(make_backing "$backing")"

  # shellcheck disable=SC2086
  if ! qemu-img create -q -f qed -o cluster_size=$cs,table_size=$ts \
         $bargs disk.qed $SIZE 2>/dev/null; then
    # QEMU cannot even create it: use our tool.
    # shellcheck disable=SC2086
    # (qemu-img may leave an empty disk.qed behind: --force.)
    "$QAD_IMG" create --force disk.qed $SIZE --cluster-size=$cs --table-size=$ts \
      ${bargs:+--backing=$(echo $bargs | cut -d' ' -f2) --backing-format=$(echo $bargs | cut -d' ' -f4)}
  fi
  qemu_io_script "$seed" $SIZE "$cs" 40 > script

  local sock="$BATS_TEST_TMPDIR/$dir.sock"
  if qemu_opens disk.qed; then
    run_qemu_io qed disk.qed script
    qemu-img convert -O raw disk.qed expected.raw
    serve_qed "$sock" disk.qed readonly=true
    nbdcopy "$(nbd_uri "$sock")" served.raw
    cmp expected.raw served.raw
    map_of disk.qed qed > map.qemu
    map_of "$(nbd_uri "$sock")" raw > map.nbd
    diff -u map.qemu map.nbd
    "$QAD_IMG" map --json disk.qed | normalize_map > map.tool
    diff -u map.qemu map.tool
    stop_nbdkit "$sock"
  else
    echo "# qemu cannot open cs=$cs ts=$ts: filled through the plugin" >&3
    reference_raw "$backing"
    run_qemu_io raw ref.raw script
    serve_qed "$sock" disk.qed
    run_qemu_io raw "$(nbd_uri "$sock")" script
    nbdcopy "$(nbd_uri "$sock")" served.raw
    stop_nbdkit "$sock"
    cmp ref.raw served.raw
    "$QAD_IMG" check disk.qed
  fi
  cd ..
}

matrix ()
{
  local cs="$1" backing="$2" ts seed=1
  for ts in 1 4 16; do
    interop_case "$cs" "$ts" "$backing" $((seed++))
  done
}

@test "qed interop: 4K clusters, no backing"        { matrix 4096 none; }
@test "qed interop: 4K clusters, raw backing"       { matrix 4096 raw; }
@test "qed interop: 4K clusters, qed backing"       { matrix 4096 qed; }
@test "qed interop: 4K clusters, chain of 3"        { matrix 4096 chain3; }
@test "qed interop: 64K clusters, no backing"       { matrix 65536 none; }
@test "qed interop: 64K clusters, raw backing"      { matrix 65536 raw; }
@test "qed interop: 64K clusters, qed backing"      { matrix 65536 qed; }
@test "qed interop: 64K clusters, chain of 3"       { matrix 65536 chain3; }
@test "qed interop: 1M clusters, no backing"        { matrix 1048576 none; }
@test "qed interop: 1M clusters, raw backing"       { matrix 1048576 raw; }
@test "qed interop: 1M clusters, qed backing"       { matrix 1048576 qed; }
@test "qed interop: 1M clusters, chain of 3"        { matrix 1048576 chain3; }
@test "qed interop: 2M clusters, no backing"        { matrix 2097152 none; }
@test "qed interop: 2M clusters, raw backing"       { matrix 2097152 raw; }
@test "qed interop: 2M clusters, qed backing"       { matrix 2097152 qed; }
@test "qed interop: 2M clusters, chain of 3"        { matrix 2097152 chain3; }
