#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Corrupt sidecars and contradicting parameters are refused at
# startup (or at connection, for size problems) with a message naming
# the file, the field and the value; never a crash, never a write.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 31
  truncate -s 1M disk.raw
  # A good sidecar to corrupt.
  start_addcow s addcow-backing=base.img
  nbdsh_on s 'h.pwrite(b"x", 0)'
  stop_nbdkit s
  cp disk.add-cow good.add-cow
}

# sidecar_refused PATTERN [ARGS...]: nbdkit exits non-zero, cleanly,
# with a message matching PATTERN; the sidecar is not modified.
sidecar_refused ()
{
  local pattern="$1"; shift
  refused disk.add-cow "$pattern" \
    timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
      addcow=disk.add-cow "$@" --run 'nbdinfo --size "$uri"'
}

@test "addcow corrupt: bad magic" {
  poke_bytes disk.add-cow 0 XCOW
  sidecar_refused 'disk.add-cow.*bad magic 58 43 4f 57'
}

@test "addcow corrupt: unknown incompatible feature bit" {
  poke disk.add-cow 24 Q 0x100
  sidecar_refused 'disk.add-cow.*incompatible feature bits 0x100'
}

@test "addcow corrupt: name past HEADER_SIZE" {
  poke disk.add-cow 12 I 65530
  sidecar_refused 'disk.add-cow.*image file name \(offset 65530, size 8\) extends past HEADER_SIZE=65536'
}

@test "addcow corrupt: HEADER_SIZE mismatch" {
  poke disk.add-cow 40 I 4096
  sidecar_refused 'disk.add-cow.*HEADER_SIZE is 4096 \(must be 65536'
}

@test "addcow corrupt: cluster_bits out of range" {
  poke disk.add-cow 20 I 30
  sidecar_refused 'disk.add-cow.*cluster_bits is 30 \(must be 12..21\)'
}

@test "addcow corrupt: image and backing names equal" {
  poke_bytes disk.add-cow 84 base.img
  sidecar_refused 'disk.add-cow.*image and backing file names are both "base.img"'
}

@test "addcow corrupt: missing backing format" {
  poke_bytes disk.add-cow 44 '\x00\x00\x00'
  sidecar_refused 'disk.add-cow.*backing file format "" is missing'
}

@test "addcow corrupt: truncated header" {
  truncate -s 100 disk.add-cow
  sidecar_refused 'disk.add-cow.*truncated: file is 100 bytes, HEADER_SIZE is 65536'
}

@test "addcow corrupt: truncated bitmap" {
  truncate -s $((65536 + 2)) disk.add-cow
  sidecar_refused 'disk.add-cow: the image is 1048576 bytes, but the add-cow bitmap \(2 bytes at offset 65536\) covers at most 0 bytes'
}

@test "addcow corrupt: bitmap too small for a grown image" {
  # 65536 bitmap bytes cover 32G of 64K clusters; 64G needs twice that.
  truncate -s 64G disk.raw
  sidecar_refused 'disk.add-cow: the image is 68719476736 bytes, but the add-cow bitmap \(65536 bytes at offset 65536\) covers at most 34359738368 bytes: the image grew'
}

@test "addcow corrupt: bit set past the end of the disk" {
  python3 -c 'f = open("disk.add-cow", "r+b"); f.seek(65536 + 100); f.write(b"\x01")'
  sidecar_refused 'disk.add-cow: the image is 1048576 bytes \(16 clusters\), but the add-cow bitmap marks cluster 800 \(at byte 52428800\) as written: the image shrank'
}

@test "addcow corrupt: backing file missing" {
  rm base.img
  sidecar_refused 'base.img.*(No such file|cannot open)'
}

@test "addcow params: contradicting the recorded backing, format, cluster size, image" {
  random_file other.img $((1024 * 1024)) 32
  sidecar_refused 'contradicts the backing file .*base.img' addcow-backing=other.img
  sidecar_refused 'addcow-backing-format=qed contradicts the backing format raw' \
    addcow-backing-format=qed
  sidecar_refused 'addcow-cluster-size=4096 contradicts the cluster size 65536' \
    addcow-cluster-size=4K
  sidecar_refused 'addcow-image=x.raw contradicts the image name "disk.raw"' \
    addcow-image=x.raw
}

@test "addcow params: the sidecar names another image than the plugin serves" {
  cp disk.raw other.raw
  refused disk.add-cow 'records the image .*disk.raw, but the plugin serves .*other.raw' \
    timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file other.raw \
      addcow=disk.add-cow --run 'nbdinfo --size "$uri"'
}

@test "addcow params: a QED-looking backing needs an explicit format (never probed)" {
  rm disk.add-cow
  printf 'QED\0' > looks.qed
  truncate -s 1M looks.qed
  refused disk.add-cow 'starts with a QED header; formats are never probed' \
    timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
      addcow=disk.add-cow addcow-backing=looks.qed --run 'true'
  [ ! -e disk.add-cow ]
  # Saying raw explicitly is accepted and recorded.
  timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow addcow-backing=looks.qed addcow-backing-format=raw \
    --run 'nbdinfo --size "$uri"'
  [ "$(dd if=disk.add-cow bs=1 skip=44 count=3 status=none)" = raw ]
}

@test "addcow params: missing addcow=, bad cluster size, bad format" {
  expect_fail_cleanly 'addcow=FILE.add-cow parameter is required' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw --run true
  expect_fail_cleanly 'addcow-cluster-size=3000: must be a power of 2' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw addcow=n.add-cow \
      addcow-cluster-size=3000 --run true
  expect_fail_cleanly 'addcow-backing-format=qcow2: must be raw or qed' \
    nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw addcow=n.add-cow \
      addcow-backing-format=qcow2 --run true
  expect_fail_cleanly 'needs the image.s name: use addcow-image=NAME' \
    nbdkit -U - --filter="$ADDCOW_FILTER" memory 1M addcow=n.add-cow --run true
}

@test "addcow lock: a second server on the same sidecar is refused" {
  start_addcow s
  expect_fail_cleanly 'disk.add-cow: add-cow file is in use by another process' \
    timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
      addcow=disk.add-cow --run true
}

@test "addcow corrupt: every single-byte corruption of the fixed header fails cleanly or serves correctly" {
  # Each byte of the 92 bytes (fixed header + names), set to 0xff: the
  # server either refuses with a message naming the file, or (for a
  # byte that does not matter) serves the same data as before.
  cmp disk.add-cow good.add-cow
  for i in $(seq 0 91); do
    cp good.add-cow disk.add-cow
    python3 -c 'import sys
f = open("disk.add-cow", "r+b"); f.seek(int(sys.argv[1])); f.write(b"\xff")' "$i"
    run timeout 20 nbdkit -U - --filter="$ADDCOW_FILTER" file disk.raw \
      addcow=disk.add-cow --run 'nbdinfo --size "$uri"'
    if [ "$status" -ge 124 ]; then
      echo "byte $i: status $status: $output"; false
    fi
    if [ "$status" -ne 0 ]; then
      [[ "$output" =~ disk.add-cow ]] || { echo "byte $i: $output"; false; }
    fi
  done
}

@test "addcow: an image that changes size while served is refused, not misread" {
  start_addcow s addcow-backing=base.img
  nbdinfo --size "$(nbd_uri s)"
  truncate -s 2M disk.raw
  expect_fail_cleanly '.' \
    nbdinfo --size "$(nbd_uri s)"
  grep -q 'disk.add-cow: the image.s size changed from 1048576 to 2097152' s.log
}
