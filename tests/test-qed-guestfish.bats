#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end: libguestfs partitions the plugin's export, makes an ext4
# filesystem, writes files and reads them back; then qemu-img check is
# clean, a fresh server shows the same files, and QEMU reads the same
# bytes from the image.  The appliance runs under TCG (KVM hangs on
# these machines); the test skips only if the appliance cannot start.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires guestfish --version
  requires qemu-img --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
}

@test "qed guestfish: mkfs, write, read back, then QEMU agrees" {
  qemu-img create -q -f qed disk.qed 256M
  random_file payload.bin 3000000 21
  sock="$BATS_TEST_TMPDIR/g.sock"
  serve_qed "$sock" disk.qed
  cat > write.gf <<'GF'
run
part-disk /dev/sda mbr
mkfs ext4 /dev/sda1
mount /dev/sda1 /
write /hello.txt "hello from the qed plugin"
upload payload.bin /payload.bin
mkdir /dir
fill-pattern "abcd" 1048576 /dir/pattern
sync
umount /
mount /dev/sda1 /
cat /hello.txt
checksum md5 /payload.bin
umount /
GF
  run timeout 600 guestfish --format=raw -a "nbd://?socket=$sock" -f write.gf
  echo "$output"
  if test "$status" -ne 0 &&
     grep -qiE "appliance|supermin|kernel|launch failed" <<<"$output"; then
    skip "the libguestfs appliance cannot start here"
  fi
  test "$status" -eq 0
  grep -q "hello from the qed plugin" <<<"$output"
  grep -q "$(md5sum < payload.bin | cut -d' ' -f1)" <<<"$output"
  stop_nbdkit "$sock"

  qemu-img check disk.qed

  # A fresh server shows the same files.
  serve_qed "$sock" disk.qed readonly=true
  cat > read.gf <<'GF'
run
mount-ro /dev/sda1 /
cat /hello.txt
checksum md5 /payload.bin
GF
  run timeout 600 guestfish --ro --format=raw -a "nbd://?socket=$sock" -f read.gf
  echo "$output"
  test "$status" -eq 0
  grep -q "hello from the qed plugin" <<<"$output"
  grep -q "$(md5sum < payload.bin | cut -d' ' -f1)" <<<"$output"
  nbdcopy "$(nbd_uri "$sock")" viaplugin.raw
  stop_nbdkit "$sock"

  # QEMU reads the identical disk.
  qemu-img convert -O raw disk.qed viaqemu.raw
  cmp viaqemu.raw viaplugin.raw
}
