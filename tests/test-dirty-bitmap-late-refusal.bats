#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# A refusal that the filter can only make after nbdkit has forked (a
# QDB file made for a disk of another size: the disk size is known only
# in .after_fork) reaches the user as one line on stderr in every mode,
# and no client waits: foreground (-f), daemon (the default: nbdkit has
# exited 0 and its stderr is /dev/null by then), and --run (the parent
# process that runs the command still holds the listening socket).

load functions.sh

line='nbdkit: error: .*disk\.qdb: bitmap "bitmap0": disk_size 4194304 does not match the size of the disk being served \(8388608 bytes\)'

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
  truncate -s 8M disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=4M
  sum="$(md5sum < disk.qdb)"
}

# once FILE: the refusal is in FILE exactly once, with nothing else.
once ()
{
  cat "$1"
  [ "$(grep -Ec "$line" "$1")" -eq 1 ]
  [ "$(wc -l < "$1")" -eq 1 ]
  # The refused file is left as it was.
  [ "$(md5sum < disk.qdb)" = "$sum" ]
}

@test "dirty-bitmap late refusal: foreground" {
  status=0
  timeout 20 nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" \
    file disk.raw dirty-bitmap=disk.qdb 2>err || status=$?
  [ "$status" -eq 1 ]
  once err
}

@test "dirty-bitmap late refusal: daemon, the line reaches the original stderr" {
  status=0
  timeout 20 nbdkit -U sock -P pid --filter="$DIRTY_BITMAP_FILTER" \
    file disk.raw dirty-bitmap=disk.qdb dirty-bitmap-control="$PWD/ctl" \
    2>err || status=$?
  [ "$status" -eq 0 ]           # nbdkit's parent exits before .after_fork
  for i in $(seq 1 100); do
    test -s pid && ! kill -0 "$(cat pid)" 2>/dev/null && break
    sleep 0.1
  done
  test -s pid                   # else the check below proves nothing
  ! kill -0 "$(cat pid)" 2>/dev/null
  once err
  run timeout 10 nbdinfo --size "$(nbd_uri sock)"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ]
  # The control socket does not outlive the refusal.
  [ ! -e ctl ]
}

@test "dirty-bitmap late refusal: --run, the command's client gets an error at once" {
  status=0
  timeout 20 nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" \
    file disk.raw dirty-bitmap=disk.qdb dirty-bitmap-control="$PWD/ctl" \
    --run 'nbdinfo --size "$uri" 2>client.err; echo "client $?" >client.rc' \
    2>err || status=$?
  [ "$status" -ne 124 ]
  once err
  [ "$(cat client.rc)" = "client 1" ]
  [ ! -e ctl ]
}

# The client connects while .after_fork still runs (the plugin's open
# is delayed), so it sits in the listening socket's queue when the
# refusal comes: it must see the connection closed, not wait.
@test "dirty-bitmap late refusal: --run, a client already queued is let go" {
  requires nbdkit --filter=delay null --dump-plugin
  SECONDS=0
  status=0
  timeout 30 nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" \
    --filter=delay file disk.raw delay-open=2 dirty-bitmap=disk.qdb \
    --run 'nbdinfo --size "$uri" 2>client.err; echo "client $?" >client.rc' \
    2>err || status=$?
  [ "$status" -ne 124 ]
  [ "$SECONDS" -lt 15 ]
  once err
  cat client.err
  [ "$(cat client.rc)" = "client 1" ]
}
