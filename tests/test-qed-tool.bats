#!/usr/bin/env bats

# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img on QED images: create makes images QEMU opens, info agrees
# with qemu-img info, map has qemu-img map's shape, check exit codes,
# and bad arguments fail cleanly.

bats_require_minimum_version 1.5.0

load functions.sh
load qed-helpers.sh

setup ()
{
  requires qemu-img --version
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
}

json_field () { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

@test "qad-img create: images qemu-img opens, with every geometry" {
  for cs in 4K 64K 1M 2M; do
    for ts in 2 4 8; do
      "$QAD_IMG" create --force d.qed 1G --cluster-size=$cs --table-size=$ts
      qemu-img check d.qed
      size=$(qemu-img info --output=json d.qed | json_field virtual-size)
      test "$size" -eq $((1 << 30))
      qemu-io -f qed -c "write -P 7 0 100k" d.qed >/dev/null
      qemu-img check d.qed
    done
  done
}

@test "qad-img create: backing files, default size from the backing file" {
  truncate -s 10M base.raw
  "$QAD_IMG" create o.qed --backing=base.raw --backing-format=raw
  info=$(qemu-img info --output=json o.qed)
  test "$(json_field virtual-size <<<"$info")" -eq $((10 << 20))
  test "$(json_field backing-filename <<<"$info")" = base.raw
  test "$(json_field backing-filename-format <<<"$info")" = raw
  "$QAD_IMG" create o2.qed 20M --backing=o.qed --backing-format=qed
  qemu-img info --backing-chain o2.qed | grep -q "base.raw"
  # A missing backing file, a bad format, bad sizes: clean errors.
  expect_fail_cleanly "missing.raw" "$QAD_IMG" create x.qed --backing=missing.raw
  expect_fail_cleanly "raw or qed" "$QAD_IMG" create x.qed 1M --backing=base.raw --backing-format=vmdk
  expect_fail_cleanly "SIZE=0: must be between" "$QAD_IMG" create x.qed 0
  expect_fail_cleanly "cluster_size=3000" "$QAD_IMG" create x.qed 1M --cluster-size=3000
  expect_fail_cleanly "table-size" "$QAD_IMG" create x.qed 1M --table-size=32
  expect_fail_cleanly "exceeds the maximum" "$QAD_IMG" create x.qed 2T --cluster-size=4K --table-size=1
  expect_fail_cleanly "cannot parse size" "$QAD_IMG" create x.qed 12Q
}

@test "qad-img info: fields agree with qemu-img info" {
  truncate -s 8M base.raw
  qemu-img create -q -f qed -o cluster_size=128k,table_size=8 -b base.raw -F raw d.qed 64M
  qemu-io -f qed -c "write -P 1 0 1M" -c "write -z 4M 256k" d.qed >/dev/null
  ours=$("$QAD_IMG" info --json d.qed)
  test "$(json_field virtual-size <<<"$ours")" -eq $((64 << 20))
  test "$(json_field cluster-size <<<"$ours")" -eq $((128 << 10))
  test "$(json_field table-size <<<"$ours")" -eq 8
  test "$(json_field allocated-bytes <<<"$ours")" -eq $((1 << 20))
  test "$(json_field zero-bytes <<<"$ours")" -eq $((256 << 10))
  test "$(json_field backing-filename <<<"$ours")" = base.raw
  test "$(json_field features-names <<<"$ours")" = "backing_file|backing_format_no_probe"
  python3 -c 'import json,sys; c=json.load(sys.stdin)["backing-chain"]; assert len(c)==1 and c[0]["format"]=="raw"' <<<"$ours"
  "$QAD_IMG" info d.qed | grep -q "cluster size: *131072"
}

@test "qad-img map: same as qemu-img map, with and without backing" {
  random_file base.raw $((6 << 20)) 4
  qemu-img create -q -f qed -b base.raw -F raw d.qed 16M
  qemu-io -f qed -c "write -P 1 0 1M" -c "write -z 2M 1M" -c "write -P 2 5M 2M" d.qed >/dev/null
  diff <(map_of d.qed) <("$QAD_IMG" map --json d.qed | normalize_map)
  qemu-img create -q -f qed e.qed 16M
  qemu-io -f qed -c "write -P 1 1M 1M" -c "write -z 3M 1M" e.qed >/dev/null
  diff <(map_of e.qed) <("$QAD_IMG" map --json e.qed | normalize_map)
  "$QAD_IMG" map e.qed | grep -q "^0x100000 "
}

@test "qad-img check: exit codes 0, 3 and 2, and --json" {
  qemu-img create -q -f qed d.qed 16M
  qemu-io -f qed -c "write -P 1 0 1M" d.qed >/dev/null
  "$QAD_IMG" check d.qed
  truncate -s $(( $(stat -c %s d.qed) + 65536 )) d.qed
  run --separate-stderr "$QAD_IMG" check --json d.qed
  test "$status" -eq 3
  test "$(json_field leaks <<<"$output")" -eq 1
  "$QAD_IMG" check --repair d.qed
  "$QAD_IMG" check d.qed
  l2=$(peek d.qed 65536 Q)
  poke d.qed $((l2 + 8)) Q 7
  run "$QAD_IMG" check d.qed
  test "$status" -eq 2
}

@test "qad-img: bad invocations fail cleanly" {
  expect_fail_cleanly "usage" "$QAD_IMG"
  expect_fail_cleanly "unknown verb" "$QAD_IMG" frobnicate x
  expect_fail_cleanly "No such file" "$QAD_IMG" info missing.qed
  printf 'junkjunk' > junk
  expect_fail_cleanly "not a QED, add-cow or QDB file" "$QAD_IMG" info junk
  : > empty
  expect_fail_cleanly "too short" "$QAD_IMG" info empty
  expect_fail_cleanly "unknown format" "$QAD_IMG" create --format=vhd x 1M
  "$QAD_IMG" --help | grep -q "create"
}

@test "qad-img info --json: a UTF-8 backing name reads as itself, bad bytes survive" {
  truncate -s 1M "bäse €.raw"
  "$QAD_IMG" create o.qed --backing="bäse €.raw" --backing-format=raw
  "$QAD_IMG" info --json o.qed | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == "bäse €.raw", d["backing-filename"]'
  # A name that is not UTF-8 (Latin-1 "\xe9"): escaped as \udce9 in
  # the JSON, from which the original bytes come back.
  name=$'l\xe9.raw'
  truncate -s 1M "$name"
  "$QAD_IMG" create o2.qed --backing="$name" --backing-format=raw
  "$QAD_IMG" info --json o2.qed > o2.json
  grep -q 'l\\udce9.raw' o2.json
  python3 -c '
import json, sys
d = json.load(open("o2.json"))
b = d["backing-filename"].encode("utf-8", "surrogateescape")
assert b == b"l\xe9.raw", b'
}
