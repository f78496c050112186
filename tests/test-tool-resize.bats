#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img resize IMAGE [+|-]SIZE, as qemu-img resize: QED (the header's
# size, within the L1 table's reach; the result read and checked by
# qemu-img and compared with qemu-img resize on a copy), an add-cow
# file with its raw image, every bitmap of a QDB file; --shrink and
# its refusal past written data; locks; a kill -9 at every write and
# sync leaves every file valid.

load functions.sh
load tool-crash-helpers.sh

setup () { tool_test_setup; }

# virtual_size FILE: as qemu-img info reports it.
virtual_size ()
{
  qemu-img info --output=json "$1" |
    sed -n 's/^ *"virtual-size": \([0-9]*\),*$/\1/p'
}

# An add-cow file a.add-cow over a.raw (1 MiB, 64 KiB clusters), with
# cluster 3 written (bytes 0x33) and marked in the bitmap, and a raw
# backing file base.raw of 512 KiB.
make_addcow ()
{
  qemu-img create -q -f raw base.raw 512K
  qemu-io -f raw -c "write -P 0x11 0 512K" base.raw >/dev/null
  truncate -s 1M a.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=a.raw -b base.raw -F raw \
    >/dev/null
  qemu-io -f raw -c "write -P 0x33 192K 64K" a.raw >/dev/null
  printf '\x08' | dd of=a.add-cow bs=1 seek=65536 conv=notrunc status=none
}

@test "resize: QED grows as qemu-img resize does" {
  qemu-img create -q -f qed a.qed 4M
  qemu-io -c "write -P 5 1M 64k" a.qed >/dev/null
  cp a.qed q.qed
  run "$QAD_IMG" resize a.qed +1.5M
  test "$status" -eq 0 && test "$output" = "Image resized."
  qemu-img resize -q q.qed +1.5M
  test "$(virtual_size a.qed)" -eq $((5632 * 1024))
  qemu-img check a.qed
  "$QAD_IMG" check a.qed
  qemu-img compare a.qed q.qed
  cmp a.qed q.qed
  "$QAD_IMG" resize a.qed 1G
  test "$(virtual_size a.qed)" -eq $((1 << 30))
  qemu-img check a.qed
}

@test "resize: QED limits: the L1 table's reach, whole sectors, a larger backing" {
  "$QAD_IMG" create -f qed a.qed 1M --cluster-size=4K --table-size=1
  run "$QAD_IMG" resize a.qed 1073742336
  test "$status" -eq 1
  [[ "$output" == "qad-img: a.qed: new size 1073742336 exceeds 1073741824, the most this image's L1 table can map"* ]]
  run "$QAD_IMG" resize a.qed 2000001
  test "$status" -eq 1
  [[ "$output" == *"not a positive multiple of 512"* ]]
  qemu-img create -q -f raw big.raw 8M
  qemu-img create -q -f qed -b big.raw -F raw o.qed 4M
  run "$QAD_IMG" resize o.qed 8M
  test "$status" -eq 1
  [[ "$output" == *"the backing file big.raw is larger (8388608 bytes)"* ]]
  run qemu-img resize o.qed 8M
  test "$status" -eq 1                 # qemu-img refuses it too
  test "$(virtual_size o.qed)" -eq $((4 << 20))
}

@test "resize: QED shrink needs --shrink and stops at data" {
  qemu-img create -q -f qed a.qed 8M
  qemu-io -c "write -P 5 5M 64k" -c "write -z 7M 64k" a.qed >/dev/null
  run "$QAD_IMG" resize a.qed 4M
  test "$status" -eq 1
  [[ "$output" == *"shrinking needs --shrink"* ]]
  run "$QAD_IMG" resize --shrink a.qed -4M
  test "$status" -eq 1
  test "$output" = "qad-img: a.qed: cannot shrink to 4194304 bytes: guest offset 5242880 (0x500000) past the new end holds data"
  test "$(virtual_size a.qed)" -eq $((8 << 20))
  # Past the data; the zero cluster at 7M is no data.
  "$QAD_IMG" resize --shrink a.qed $(((5 << 20) + 65536))
  test "$(virtual_size a.qed)" -eq $(((5 << 20) + 65536))
  qemu-img check a.qed
  qemu-io -c "read -P 5 5M 64k" a.qed >/dev/null
  # Grown again, the cut area reads zeroes.
  "$QAD_IMG" resize a.qed 8M
  qemu-io -c "read -P 0 7M 64k" a.qed >/dev/null
  # A negative size is a size wherever it stands.
  "$QAD_IMG" resize --shrink a.qed -1M --output=json
  "$QAD_IMG" resize -f qed --shrink a.qed -- -1M
  test "$(virtual_size a.qed)" -eq $((6 << 20))
}

@test "resize: add-cow grows and shrinks its raw image with the bitmap" {
  make_addcow
  "$QAD_IMG" resize a.add-cow 3M
  test "$(stat -c %s a.raw)" -eq $((3 << 20))
  test "$(stat -c %s a.add-cow)" -eq $((65536 + 65536))
  "$QAD_IMG" check a.add-cow
  # Reads: backing below 512K, cluster 3 from the image, zeroes after.
  cp base.raw want.raw
  truncate -s 3M want.raw
  qemu-io -f raw -c "write -P 0x33 192K 64K" want.raw >/dev/null
  "$QAD_IMG" compare a.add-cow want.raw
  run "$QAD_IMG" resize --shrink a.add-cow 128K
  test "$status" -eq 1
  [[ "$output" == *"guest offset 196608 (0x30000) past the new end is held by the image"* ]]
  "$QAD_IMG" resize --shrink a.add-cow 256K
  test "$(stat -c %s a.raw)" -eq $((256 << 10))
  "$QAD_IMG" check a.add-cow
  truncate -s 256K want.raw
  "$QAD_IMG" compare -s a.add-cow want.raw
}

@test "resize: add-cow refuses to grow over a larger backing file" {
  make_addcow
  "$QAD_IMG" resize --shrink a.add-cow 256K
  run "$QAD_IMG" resize a.add-cow 1M
  test "$status" -eq 1
  [[ "$output" == *"the backing file is larger (524288 bytes)"* ]]
  test "$(stat -c %s a.raw)" -eq $((256 << 10))
}

@test "resize: every bitmap of a QDB file, dirty bits kept" {
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  "$QAD_IMG" create -f qdb d.qdb 4M --bitmap=b1 --bitmap=b2 -g 64K
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" memory 4M \
    dirty-bitmap=d.qdb
  nbdsh -u "$(nbd_uri sock)" -c "h.pwrite(b'x', 3 * 65536 + 100)"
  stop_nbdkit sock
  "$QAD_IMG" resize d.qdb 16M
  run "$QAD_IMG" info --output=json d.qdb
  [[ "$output" == *'"name": "b1", "enabled": true, "in-use": false, "granularity": 65536, "disk-size": 16777216, "dirty-granules": 1'* ]]
  [[ "$output" == *'"name": "b2", "enabled": true, "in-use": false, "granularity": 65536, "disk-size": 16777216, "dirty-granules": 1'* ]]
  "$QAD_IMG" check d.qdb
  run "$QAD_IMG" resize --shrink d.qdb 128K
  test "$status" -eq 1
  [[ "$output" == *'bitmap "b1" has a dirty granule at offset 196608'* ]]
  "$QAD_IMG" resize --shrink d.qdb 256K
  run "$QAD_IMG" map d.qdb --bitmap=b2
  test "${lines[0]}" = "0 196608 clean"
  test "${lines[1]}" = "196608 65536 dirty"
  test "${#lines[@]}" -eq 2
}

@test "resize: -p shows progress as qemu-img -p does, only when asked" {
  # Zero clusters every 64 KiB past the new end (no data: the shrink
  # goes on) make a long scan; zero clusters need a backing file.
  qemu-img create -q -f raw base.raw 4K
  "$QAD_IMG" create -o cluster_size=4K,table_size=2 -b base.raw -F raw \
    a.qed 64M >/dev/null
  args=()
  for ((off = 1 << 20; off < 64 << 20; off += 65536)); do
    args+=(-c "write -z $off 4k")
  done
  qemu-io -f qed "${args[@]}" a.qed >/dev/null
  "$QAD_IMG" resize -p --shrink a.qed 1M > out
  # Steps rewritten in place with \r, rising to 100% and a newline.
  tr '\r' '\n' < out | grep -E '^    \([0-9.]+/100%\)$' > steps
  test "$(wc -l < steps)" -gt 10
  test "$(head -1 steps)" = "    (0.00/100%)"
  test "$(tail -1 steps)" = "    (100.00/100%)"
  test "$(grep -c '(100.00/100%)' steps)" -eq 1
  sort -t'(' -k2 -n -c steps
  test "$(tail -1 out)" = "Image resized."
  test "$(virtual_size a.qed)" -eq $((1 << 20))
  qemu-img check a.qed
  # A grow has no scan: 0% and 100%.
  "$QAD_IMG" resize -p a.qed 2M | tr '\r' '\n' | grep -c "/100%)" | grep -qx 2
  # Without -p, or with -q, no progress.
  run "$QAD_IMG" resize a.qed 3M
  test "$status" -eq 0 && test "$output" = "Image resized."
  test -z "$("$QAD_IMG" resize -p -q a.qed 4M)"
  test "$(virtual_size a.qed)" -eq $((4 << 20))
}

@test "resize: --output=json (and --json) reports the old and new sizes" {
  qemu-img create -q -f qed a.qed 4M
  "$QAD_IMG" resize --output=json a.qed +1M | json_fields filename=a.qed \
    format=qed old-virtual-size=$((4 << 20)) virtual-size=$((5 << 20))
  # -p prints no progress into the document.
  "$QAD_IMG" resize -p --json --shrink a.qed -- -2M | json_fields \
    filename=a.qed format=qed old-virtual-size=$((5 << 20)) \
    virtual-size=$((3 << 20))
  test "$(virtual_size a.qed)" -eq $((3 << 20))
  make_addcow
  "$QAD_IMG" resize --json --shrink a.add-cow 256K | json_fields \
    filename=a.add-cow format=add-cow old-virtual-size=$((1 << 20)) \
    virtual-size=$((256 << 10))
  "$QAD_IMG" create -f qdb d.qdb 4M --bitmap=b1 >/dev/null
  "$QAD_IMG" resize --output=json d.qdb 16M | json_fields filename=d.qdb \
    format=qdb old-virtual-size=$((4 << 20)) virtual-size=$((16 << 20))
  # qad-img(1) documents every key, in its example object.
  "$QAD_IMG" resize --json d.qdb 17M > out.json
  documented_keys resize < out.json
  # A failure prints no document.
  run "$QAD_IMG" resize --output=json a.qed 1M
  test "$status" -eq 1
  ! grep -q "{" <<<"$output"
}

@test "resize: refused while the image is served; -U and bad usage" {
  qemu-img create -q -f qed a.qed 4M
  start_nbdkit sock "$QED_PLUGIN" file=a.qed
  run "$QAD_IMG" resize a.qed 8M
  test "$status" -eq 1
  [[ "$output" == qad-img:*a.qed* ]]
  stop_nbdkit sock
  test "$(virtual_size a.qed)" -eq $((4 << 20))
  run "$QAD_IMG" resize -U a.qed 8M
  test "$status" -eq 1
  run "$QAD_IMG" resize a.qed
  test "$status" -eq 1
  run "$QAD_IMG" resize a.qed 8X
  [[ "$output" == *"cannot parse size: 8X"* ]]
  "$QAD_IMG" resize --help | grep -q "^usage: qad-img resize"
}

@test "resize: add-cow and QDB files in use are refused" {
  requires_file "$ADDCOW_FILTER"
  make_addcow
  start_nbdkit sock --filter="$ADDCOW_FILTER" file a.raw addcow=a.add-cow
  run "$QAD_IMG" resize a.add-cow 2M
  test "$status" -eq 1
  [[ "$output" == *"a.add-cow"* ]]
  stop_nbdkit sock
  test "$(stat -c %s a.raw)" -eq $((1 << 20))
  "$QAD_IMG" create -f qdb d.qdb 1M --bitmap=b1
  start_nbdkit sock2 --filter="$DIRTY_BITMAP_FILTER" memory 1M \
    dirty-bitmap=d.qdb
  run "$QAD_IMG" resize d.qdb 2M
  test "$status" -eq 1
  [[ "$output" == *"d.qdb: QDB file is in use by another process"* ]]
}

@test "resize: add-cow bitmap and image are synced in the safe order" {
  mkdir c
  (cd c && make_addcow)
  log_calls c "$PWD/grow.calls" "$QAD_IMG" resize a.add-cow 200G
  durable_before grow.calls a.add-cow a.raw
  log_calls c "$PWD/shrink.calls" "$QAD_IMG" resize --shrink a.add-cow 256K
  durable_before shrink.calls a.raw a.add-cow
}

verify_qed_resize ()
{
  check_ok a.qed qemu &&
    qemu-io -c "read -P 5 1M 64k" a.qed >/dev/null &&
    { test "$(virtual_size a.qed)" -eq $((4 << 20)) ||
      test "$(virtual_size a.qed)" -eq $((64 << 20)); }
}

verify_addcow_resize ()
{
  local size
  check_ok a.add-cow || return 1
  size=$(stat -c %s a.raw)
  cp ../want.raw w.raw
  truncate -s "$size" w.raw
  "$QAD_IMG" compare -s a.add-cow w.raw >/dev/null
}

verify_qdb_resize ()
{
  check_ok d.qdb &&
    "$QAD_IMG" info --output=json d.qdb | grep -q '"dirty-granules": 1'
}

@test "resize: a kill -9 at every write and sync leaves valid files" {
  mkdir q
  (cd q && qemu-img create -q -f qed a.qed 4M &&
     qemu-io -c "write -P 5 1M 64k" a.qed >/dev/null)
  n=$(kill_at_every_call q verify_qed_resize "$QAD_IMG" resize a.qed 64M)
  echo "# QED: $n crash points" >&3

  mkdir c
  (cd c && make_addcow)
  cp c/base.raw want.raw
  truncate -s 1M want.raw
  qemu-io -f raw -c "write -P 0x33 192K 64K" want.raw >/dev/null
  (cd c && "$QAD_IMG" resize --shrink a.add-cow 512K >/dev/null)
  n=$(kill_at_every_call c verify_addcow_resize "$QAD_IMG" resize a.add-cow 5M)
  echo "# add-cow grow: $n crash points" >&3
  n=$(kill_at_every_call c verify_addcow_resize "$QAD_IMG" resize --shrink a.add-cow 256K)
  echo "# add-cow shrink: $n crash points" >&3

  # With 4 KiB clusters a bitmap cluster covers 128 MiB: growing past
  # it makes the bitmap longer, so its order against the image counts.
  mkdir c4
  (cd c4 && cp ../c/base.raw . && truncate -s 100M a.raw &&
     "$QAD_IMG" create -f add-cow a.add-cow --image=a.raw -b base.raw \
       -F raw --cluster-size=4K >/dev/null &&
     qemu-io -f raw -c "write -P 0x33 192K 4K" a.raw >/dev/null &&
     printf '\x01' | dd of=a.add-cow bs=1 seek=$((4096 + 6)) conv=notrunc \
       status=none)
  cp c/base.raw want.raw
  qemu-io -f raw -c "write -P 0x33 192K 4K" want.raw >/dev/null
  n=$(kill_at_every_call c4 verify_addcow_resize "$QAD_IMG" resize a.add-cow 200M)
  echo "# add-cow grow past a bitmap cluster: $n crash points" >&3

  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  mkdir d
  (cd d && "$QAD_IMG" create -f qdb d.qdb 4M --bitmap=b1)
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" memory 4M \
    dirty-bitmap=d/d.qdb
  nbdsh -u "$(nbd_uri sock)" -c "h.pwrite(b'x', 100)"
  stop_nbdkit sock
  n=$(kill_at_every_call d verify_qdb_resize "$QAD_IMG" resize d.qdb 1G)
  echo "# QDB: $n crash points" >&3
}
