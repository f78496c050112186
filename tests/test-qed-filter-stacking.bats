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
# Two ways to stack: one server, with add-cow's image a local file it
# opens itself (addcow-local-image=) and the qed filter below it as the
# backing; or two servers, add-cow over a local raw file with the qed
# filter's server as its NBD backing (addcow-backing=NBD-URI).  Without
# addcow-local-image= both filters in one server are read-only (add-cow
# would write into the plugin below), which is checked too.

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

# Three writes (over data, unaligned; inside the zero cluster; the
# last sector) on the server at $1, then the same on ref.raw.
write_three ()
{
  nbdsh -u "$1" -c '
h.pwrite(b"W" * 70000, 500000)        # over data, unaligned
h.pwrite(b"Z" * 4096, 1048576 + 4096) # inside the zero cluster
h.pwrite(b"E" * 512, 4 * 1048576 - 512) # the last sector
h.flush()
'
  qemu-io -f raw -c "write -P 0x57 500000 70000" \
    -c "write -P 0x5a $((1048576 + 4096)) 4096" \
    -c "write -P 0x45 $((4 * 1048576 - 512)) 512" ref.raw >/dev/null
}

# The three writes are in local.raw, at their own offsets.
three_in_local_raw ()
{
  python3 - <<'PY'
d = open("local.raw", "rb").read()
assert d[500000:570000] == b"W" * 70000
assert d[1052672:1056768] == b"Z" * 4096
assert d[-512:] == b"E" * 512
PY
}

@test "qed filter stacking: add-cow on top, writes land in the add-cow image" {
  start_nbdkit q.sock curl "$WEB_URL/disk.qed" --filter="$QED_FILTER"
  truncate -s 4M local.raw
  start_nbdkit s.sock --filter="$ADDCOW_FILTER" file local.raw \
    addcow=local.add-cow addcow-backing="$(nbd_uri "$PWD/q.sock")"
  write_three "$(nbd_uri "$PWD/s.sock")"
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp ref.raw got.raw
  stop_nbdkit s.sock
  stop_nbdkit q.sock
  # The writes are in the add-cow image (its raw file)...
  three_in_local_raw
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

# The one-server stack, on socket s.sock.
start_one_server ()
{
  start_nbdkit s.sock --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    curl "$WEB_URL/disk.qed" addcow="$PWD/local.add-cow" \
    addcow-local-image="$PWD/local.raw" "$@"
}

@test "qed filter stacking: one server, addcow-local-image= is writable" {
  start_one_server
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c 'assert not h.is_read_only()
assert h.get_size() == 4 * 1048576
assert h.can_flush() and h.can_fua() and h.can_multi_conn()'
  write_three "$(nbd_uri "$PWD/s.sock")"
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp ref.raw got.raw
  stop_nbdkit s.sock
  # The new image was sized from the backing; the writes are in it,
  # at their own offsets.
  test "$(stat -c %s local.raw)" -eq $((4 * 1048576))
  three_in_local_raw
  "$QAD_IMG" check local.add-cow
  "$QAD_IMG" info local.add-cow | grep -F "$WEB_URL/disk.qed"
  # They survive a restart, and unwritten clusters still read from the
  # web server.
  start_one_server
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got2.raw
  cmp ref.raw got2.raw
  stop_nbdkit s.sock
  test "$(md5sum < www/disk.qed)" = "$served_md5"
  web_requests > /dev/null
  ! grep -Ev '"(GET|HEAD) ' "$WEB_LOG"
}

@test "qed filter stacking: one server, the sidecar records BACKING_SUPPLIED and a label" {
  start_one_server
  stop_nbdkit s.sock
  python3 - "$WEB_URL/disk.qed" <<'PY'
import struct, sys
h = open("local.add-cow", "rb").read(4096)
boff, bsize, ioff, isize = struct.unpack_from("<IIII", h, 4)
assert struct.unpack_from("<Q", h, 24)[0] == 1, "BACKING_SUPPLIED"
assert h[boff:boff + bsize].decode() == sys.argv[1]
assert h[44:60].rstrip(b"\0") == b"raw"
assert h[ioff:ioff + isize] == b"local.raw"
PY
  # Another backing under the same overlay is refused, in one line.
  cp www/disk.qed www/other.qed
  run nbdkit -U - --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    curl "$WEB_URL/other.qed" addcow="$PWD/local.add-cow" \
    addcow-local-image="$PWD/local.raw" --run true
  test "$status" -ne 0
  [[ "$output" == *"was made over the backing \"$WEB_URL/disk.qed\""* ]]
  # So is opening it as an overlay of the plugin's own image.
  run nbdkit -U - --filter="$ADDCOW_FILTER" file local.raw \
    addcow="$PWD/local.add-cow" --run true
  test "$status" -ne 0
  [[ "$output" == *"give addcow-local-image="* ]]
}

@test "qed filter stacking: one server, flushed and FUA writes survive kill -9" {
  start_one_server
  write_three "$(nbd_uri "$PWD/s.sock")"
  # A FUA write into a cluster no write touched before.
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c '
h.pwrite(b"F" * 1000, 2 * 1048576 + 100, nbd.CMD_FLAG_FUA)'
  qemu-io -f raw -c "write -P 0x46 $((2 * 1048576 + 100)) 1000" \
    ref.raw >/dev/null
  stop_nbdkit s.sock KILL
  "$QAD_IMG" check local.add-cow
  start_one_server
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp ref.raw got.raw
  stop_nbdkit s.sock
  test "$(md5sum < www/disk.qed)" = "$served_md5"
}

@test "qed filter stacking: one server, copy-on-read fills the local image" {
  start_one_server addcow-on-read=true
  # Every byte read (nbdcopy would skip the holes its map shows).
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c '
with open("got.raw", "wb") as f:
    for off in range(0, h.get_size(), 1048576):
        f.write(h.pread(1048576, off))
h.flush()'
  cmp ref.raw got.raw
  stop_nbdkit s.sock
  cmp ref.raw local.raw
  "$QAD_IMG" info local.add-cow | grep -i "all.allocated"
  test "$(md5sum < www/disk.qed)" = "$served_md5"
}

@test "qed filter stacking: one server, a local image larger than the backing" {
  truncate -s 6M local.raw
  start_one_server
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c '
assert h.get_size() == 6 * 1048576
h.pwrite(b"L" * 4096, 5 * 1048576)
h.flush()'
  truncate -s 6M ref.raw
  qemu-io -f raw -c "write -P 0x4c $((5 * 1048576)) 4096" ref.raw >/dev/null
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp ref.raw got.raw
}

@test "qed filter stacking: one server, extents and the image's lock" {
  start_one_server
  write_three "$(nbd_uri "$PWD/s.sock")"
  # Written clusters are data (from the local image); clusters the QED
  # image never allocated stay holes (from the qed filter below).
  nbdinfo --map --json "$(nbd_uri "$PWD/s.sock")" > map.json
  python3 - <<'PY'
import json
m = json.load(open("map.json"))
def at(off):
    return next(e for e in m if e["offset"] <= off < e["offset"] + e["length"])
assert at(500000)["type"] & 1 == 0, at(500000)      # written: data
assert at(3 * 1048576 - 1)["type"] == 3, at(3 * 1048576 - 1)  # unallocated
assert at(4 * 1048576 - 1)["type"] & 1 == 0         # the last sector
PY
  # A second server on the same local image is refused, in one line.
  run nbdkit -U - --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    curl "$WEB_URL/disk.qed" addcow="$PWD/other.add-cow" \
    addcow-local-image="$PWD/local.raw" --run true
  test "$status" -ne 0
  [[ "$output" == *local.raw* ]]
  stop_nbdkit s.sock
}
