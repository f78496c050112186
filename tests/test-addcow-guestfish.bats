#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end with libguestfs: a guest kernel partitions and formats
# the disk through the filter (over a backing file that already holds
# a filesystem), writes files, and reads them back; then the same data
# through a fresh server.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires guestfish --version
  cd "$BATS_TEST_TMPDIR"
}

gf ()
{
  timeout 300 guestfish --format=raw -a "nbd://?socket=$PWD/$1" "${@:2}"
}

@test "addcow guestfish: mkfs, write files, read back through a fresh server" {
  # The backing file: a disk with an ext4 filesystem and one file.
  truncate -s 64M base.img
  start_nbdkit b file base.img
  gf b <<'GF'
run
part-disk /dev/sda mbr
mkfs ext4 /dev/sda1
mount /dev/sda1 /
write /base.txt "from the backing file\n"
GF
  stop_nbdkit b
  truncate -s 64M disk.raw
  start_addcow s addcow-backing=base.img
  gf s <<'GF'
run
mount /dev/sda1 /
write /new.txt "written through add-cow\n"
mkdir /dir
fill 0x41 1000000 /dir/big
rm /base.txt
write /base.txt "replaced\n"
GF
  stop_nbdkit s
  # A fresh server (sdb), and the backing file, unchanged (sda).
  start_nbdkit b -r file base.img
  start_addcow s
  run timeout 300 guestfish --ro --format=raw -a "nbd://?socket=$PWD/b" \
    -a "nbd://?socket=$PWD/s" <<'GF'
run
mount-ro /dev/sda1 /
cat /base.txt
umount /
mount-ro /dev/sdb1 /
cat /new.txt
cat /base.txt
checksum md5 /dir/big
GF
  echo "$output"
  [ "${lines[0]}" = "from the backing file" ]
  [ "${lines[1]}" = "written through add-cow" ]
  [ "${lines[2]}" = "replaced" ]
  [ "${lines[3]}" = "$(head -c 1000000 /dev/zero | tr '\0' A | md5sum | cut -d' ' -f1)" ]
}
