#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end: a QED image holding an ext4 filesystem sits on a web
# server (lighttpd); libguestfs reads files from it through
# "nbdkit curl URL --filter=qed".  The appliance runs under TCG; the
# test skips only if the appliance cannot start.

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh

setup ()
{
  requires guestfish --version
  requires mkfs.ext4 -V
  requires qemu-img --version
  requires_qed_filter
  requires_web
  cd "$BATS_TEST_TMPDIR"
}

@test "qed filter guestfish: read a filesystem from a QED image over HTTP" {
  mkdir tree www
  echo "hello from the qed filter" > tree/hello.txt
  random_file tree/payload.bin 2000000 22
  mkfs.ext4 -q -F -d tree fs.raw 64M
  qemu-img convert -f raw -O qed -o cluster_size=65536 fs.raw www/fs.qed
  start_web_server www
  sock="$BATS_TEST_TMPDIR/g.sock"
  start_nbdkit "$sock" curl "$WEB_URL/fs.qed" --filter="$QED_FILTER"
  cat > read.gf <<'GF'
run
mount-ro /dev/sda /
cat /hello.txt
checksum md5 /payload.bin
GF
  run timeout 600 guestfish --ro --format=raw -a "nbd://?socket=$sock" -f read.gf
  echo "$output"
  if test "$status" -ne 0 &&
     grep -qiE "appliance|supermin|kernel|launch failed" <<<"$output"; then
    skip "the libguestfs appliance cannot start here"
  fi
  test "$status" -eq 0
  grep -q "hello from the qed filter" <<<"$output"
  grep -q "$(md5sum < tree/payload.bin | cut -d' ' -f1)" <<<"$output"
}
