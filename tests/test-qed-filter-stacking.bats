#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# A writable disk from a QED image on a web server: the qed filter over
# curl serves the image read-only, and an add-cow overlay on top keeps
# the writes in a local raw file.  Writes land in the add-cow image;
# the file on the web server is never modified (and the web server
# only ever sees GET and HEAD).
#
# add-cow writes into the plugin below it, so it is stacked on the qed
# filter through its NBD backing (addcow-backing=NBD-URI), not with
# both filters in one server: that stack is read-only, which is
# checked too.

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh

setup ()
{
  requires_nbdsh
  requires qemu-img --version
  requires qemu-io --version
  requires_file "$ADDCOW_FILTER"
  requires_qed_filter
  requires_web
  cd "$BATS_TEST_TMPDIR"
  mkdir www
  qemu-img create -q -f qed -o cluster_size=65536 www/disk.qed 4M
  qemu-io -f qed -c "write -P 0x61 0 1M" -c "write -z 1M 64k" \
    -c "write -P 0x62 3M 200k" www/disk.qed >/dev/null
  qemu-img convert -O raw www/disk.qed ref.raw
  served_md5="$(md5sum < www/disk.qed)"
  start_web_server www
}

@test "qed filter stacking: add-cow on top, writes land in the add-cow image" {
  start_nbdkit q.sock curl "$WEB_URL/disk.qed" --filter="$QED_FILTER"
  truncate -s 4M local.raw
  start_nbdkit s.sock --filter="$ADDCOW_FILTER" file local.raw \
    addcow=local.add-cow addcow-backing="$(nbd_uri "$PWD/q.sock")"
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c '
h.pwrite(b"W" * 70000, 500000)        # over data, unaligned
h.pwrite(b"Z" * 4096, 1048576 + 4096) # inside the zero cluster
h.pwrite(b"E" * 512, 4 * 1048576 - 512) # the last sector
h.flush()
'
  # The same writes on the raw reference.
  qemu-io -f raw -c "write -P 0x57 500000 70000" \
    -c "write -P 0x5a $((1048576 + 4096)) 4096" \
    -c "write -P 0x45 $((4 * 1048576 - 512)) 512" ref.raw >/dev/null
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp ref.raw got.raw
  stop_nbdkit s.sock
  stop_nbdkit q.sock
  # The writes are in the add-cow image (its raw file)...
  python3 - <<'PY'
d = open("local.raw", "rb").read()
assert d[500000:570000] == b"W" * 70000
assert d[1052672:1056768] == b"Z" * 4096
assert d[-512:] == b"E" * 512
PY
  "$QAD_IMG" check local.add-cow
  # ... and never on the web server.
  test "$(md5sum < www/disk.qed)" = "$served_md5"
  web_requests > /dev/null
  ! grep -Ev '"(GET|HEAD) ' "$WEB_LOG"
}

@test "qed filter stacking: both filters in one server are read-only" {
  nbdkit -U - --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    curl "$WEB_URL/disk.qed" addcow="$PWD/one.add-cow" addcow-image=view \
    --run 'nbdsh -u "$uri" -c "assert h.is_read_only()"'
  test "$(md5sum < www/disk.qed)" = "$served_md5"
}
