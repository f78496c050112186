#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Safe defaults of the QED plugin: "nbdkit -r" and readonly=true never
# write the image (not even to repair NEED_CHECK or clear autoclear
# bits); the repair waits for the first writable connection and is
# logged at normal verbosity; an image the server cannot open for
# writing is served read-only with one notice line.

load functions.sh
load qed-helpers.sh

setup () { qed_server_setup; }

teardown ()
{
  cleanup_servers
  chattr -i "$BATS_TEST_TMPDIR"/*.qed 2>/dev/null || true
}

features () { peek "$1" 16 Q; }
# An image left by a crash: data, three leaked clusters, NEED_CHECK
# and an unknown autoclear bit.
crashed_image ()
{
  qemu-img create -q -f qed "$1" 16M
  qemu-io -f qed -c "write -P 0x44 0 1M" "$1" >/dev/null
  truncate -s $(( $(stat -c %s "$1") + 3 * 65536 )) "$1"
  poke "$1" 16 Q 2
  poke "$1" 32 Q 0x100
}

@test "qed readonly: nbdkit -r never writes an image left with NEED_CHECK" {
  crashed_image disk.qed
  before="$(fingerprint disk.qed)"
  start_nbdkit "$SOCK" -r "$QED_PLUGIN" file=disk.qed
  qemu-io -f raw -r -c "read -P 0x44 0 1M" -c "read -P 0 1M 15M" "$URI" |
    (! grep -q failed)
  nbdinfo --map "$URI" >/dev/null
  stop_nbdkit "$SOCK"
  test "$(fingerprint disk.qed)" = "$before"
  test $(( $(features disk.qed) & 2 )) -eq 2
  test "$(peek disk.qed 32 Q)" -eq 256
  # Not even a notice: nothing was repaired.
  (! grep -q "repaired" "$SOCK.log")
}

@test "qed readonly: readonly=true with check=on never writes either" {
  crashed_image disk.qed
  before="$(fingerprint disk.qed)"
  serve_qed "$SOCK" disk.qed readonly=true check=on
  qemu-io -f raw -r -c "read -P 0x44 0 1M" "$URI" | (! grep -q failed)
  stop_nbdkit "$SOCK"
  test "$(fingerprint disk.qed)" = "$before"
}

@test "qed readonly: the first writable connection repairs, with one notice" {
  requires_nbdsh
  crashed_image disk.qed
  size0=$(stat -c %s disk.qed)
  start_nbdkit "$SOCK" "$QED_PLUGIN" file=disk.qed
  # start_nbdkit's handshake was a writable connection: repaired now.
  grep -q "^nbdkit: qed: notice: .*disk.qed: repaired: 0 corruptions fixed, 3 leaked clusters reclaimed" "$SOCK.log"
  test "$(grep -c notice "$SOCK.log")" -eq 1
  test $(( $(features disk.qed) & 2 )) -eq 0
  test "$(peek disk.qed 32 Q)" -eq 0
  test "$(stat -c %s disk.qed)" -lt "$size0"
  nbdsh -u "$URI" -c 'h.pwrite(b"w" * 4096, 2 << 20)' -c 'h.flush()'
  stop_nbdkit "$SOCK"
  qemu-img check disk.qed
  qemu-io -f qed -r -c "read -P 0x44 0 1M" -c "read -P 0x77 2M 4k" disk.qed |
    (! grep -q failed)
}

@test "qed readonly: a read-only server keeps the image locked for writers" {
  crashed_image disk.qed
  start_nbdkit "$SOCK" -r "$QED_PLUGIN" file=disk.qed
  expect_fail_cleanly "lock" qemu-io -f qed -c "write 0 512" disk.qed
  # Readers may share it.
  qemu-img info -U disk.qed >/dev/null
}

@test "qed readonly: an image that cannot be opened for writing is served read-only with one notice" {
  qemu-img create -q -f qed disk.qed 16M
  qemu-io -f qed -c "write -P 0x55 0 64k" disk.qed >/dev/null
  if test "$(id -u)" -eq 0; then
    chattr +i disk.qed 2>/dev/null || skip "chattr +i not permitted here"
  else
    chmod 444 disk.qed
  fi
  before="$(fingerprint disk.qed)"
  serve_qed "$SOCK" disk.qed
  test "$(grep -c "^nbdkit: qed: notice: .*disk.qed: cannot be opened for writing (.*): serving it read-only$" "$SOCK.log")" -eq 1
  test "$(wc -l < "$SOCK.log")" -eq 1
  test "$(nbdinfo --json "$URI" | python3 -c 'import json,sys; print(json.load(sys.stdin)["exports"][0]["is_read_only"])')" = "True"
  qemu-io -f raw -c "read -P 0x55 0 64k" "$URI" | (! grep -q failed)
  expect_fail_cleanly "" qemu-io -f raw -c "write 0 512" "$URI"
  stop_nbdkit "$SOCK"
  test "$(fingerprint disk.qed)" = "$before"
}
