#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The qed filter over nbdkit's ssh plugin, against a real sshd started
# by the test (tests/ssh-server.sh): QEMU-made QED images read through
# SSH equal qemu-img convert -O raw of the same image, and the
# one-server writable stack of the man pages works over SSH too.  The
# test is skipped only when sshd cannot run here.

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh
load ssh-server.sh

setup ()
{
  requires_nbdsh
  requires qemu-img --version
  requires qemu-io --version
  requires nbdcopy --version
  requires_qed_filter
  requires_ssh_server
  cd "$BATS_TEST_TMPDIR"
  mkdir remote
}

# make_image NAME CLUSTER TABLE: a QED image written by qemu-io, with
# data, a zero cluster, unallocated space and a partial last cluster.
make_image ()
{
  qemu-img create -q -f qed -o cluster_size="$2",table_size="$3" \
    "remote/$1" 5000K
  qemu-io -f qed -c "write -P 0x61 0 1M" -c "write -z 1M $2" \
    -c "write -P 0x62 3M 200k" -c "write -P 0x63 $((5000 * 1024 - 700)) 700" \
    "remote/$1" >/dev/null
  qemu-img convert -O raw "remote/$1" "$1.raw"
}

@test "qed filter over ssh: reads equal qemu-img convert" {
  make_image a.qed 65536 4
  make_image b.qed 4096 2
  for img in a.qed b.qed; do
    rm -f got.raw
    nbdkit -U - --filter="$QED_FILTER" ssh "${SSH_ARGS[@]}" \
      "$PWD/remote/$img" --run 'nbdcopy "$uri" got.raw'
    cmp "$img.raw" got.raw
  done
}

@test "qed filter over ssh: add-cow on top in one server is writable" {
  make_image a.qed 65536 4
  served_md5="$(md5sum < remote/a.qed)"
  label="ssh://127.0.0.1$PWD/remote/a.qed"
  start_nbdkit s.sock --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    ssh "${SSH_ARGS[@]}" "$PWD/remote/a.qed" \
    addcow="$PWD/local.add-cow" addcow-local-image="$PWD/local.raw" \
    addcow-backing-label="$label"
  nbdsh -u "$(nbd_uri "$PWD/s.sock")" -c '
h.pwrite(b"S" * 5000, 1048576 - 1000)
h.flush()'
  qemu-io -f raw -c "write -P 0x53 $((1048576 - 1000)) 5000" a.qed.raw \
    >/dev/null
  nbdcopy "$(nbd_uri "$PWD/s.sock")" got.raw
  cmp a.qed.raw got.raw
  stop_nbdkit s.sock
  "$QAD_IMG" check local.add-cow
  test "$(md5sum < remote/a.qed)" = "$served_md5"
  # The ssh plugin has no url=: without a label the stack is refused,
  # in one line saying what to add.
  rm -f local.raw local.add-cow
  run nbdkit -U - --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    ssh "${SSH_ARGS[@]}" "$PWD/remote/a.qed" \
    addcow="$PWD/local.add-cow" addcow-local-image="$PWD/local.raw" \
    --run true
  test "$status" -ne 0
  [[ "$output" == *"addcow-backing-label=LABEL"* ]]
}
