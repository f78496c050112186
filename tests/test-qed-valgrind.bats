#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The plugin under valgrind inside a real nbdkit: a workload of every
# request type (allocating and in-place writes, zero, trim, flush,
# extents, reads through a backing file), then a clean shutdown, which
# runs the final flush and frees everything.  Any memcheck error or
# definite leak fails the test.

load functions.sh
load qed-helpers.sh

setup ()
{
  requires valgrind --version
  requires qemu-img --version
  requires nbdinfo --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
}

# vg_serve SOCK ARGS...: start nbdkit under valgrind.
vg_serve ()
{
  local sock="$1"; shift
  valgrind --error-exitcode=119 --leak-check=full \
    --errors-for-leak-kinds=definite --trace-children=no \
    --suppressions="$BATS_TEST_DIRNAME/nbdkit.supp" \
    nbdkit -f -U "$sock" "$@" 2> "$sock.vg" &
  echo $! > "$sock.pid"
  echo $! >> "$BATS_TEST_TMPDIR/.server-pids"
  local i
  for i in $(seq 1 300); do test -S "$sock" && return 0; sleep 0.1; done
  cat "$sock.vg"
  return 1
}

# vg_stop SOCK: stop it and require a clean valgrind report.
vg_stop ()
{
  local sock="$1" pid
  pid=$(cat "$sock.pid")
  local st=0
  kill -TERM "$pid"
  wait "$pid" || st=$?
  cat "$sock.vg"
  test "$st" -eq 0
  grep -q "ERROR SUMMARY: 0 errors" "$sock.vg"
}

@test "qed valgrind: every request type, with a backing file" {
  random_file base.raw $((3 << 20)) 8
  qemu-img create -q -f qed -o cluster_size=64k -b base.raw -F raw d.qed 8M
  sock="$BATS_TEST_TMPDIR/v.sock"
  vg_serve "$sock" "$QED_PLUGIN" file=d.qed
  uri="$(nbd_uri "$sock")"
  qemu-io -f raw -c "write -P 1 0 1M" -c "write -P 2 100 5000" \
    -c "write -z 2M 1M" -c "write -z 4M 1000" -c "discard 0 64k" \
    -c flush -c "write -P 3 7M 1M" -c "read 0 8M" "$uri" >/dev/null
  nbdinfo --map "$uri" >/dev/null
  vg_stop "$sock"
  qemu-img check d.qed
}

@test "qed valgrind: NEED_CHECK repair on open, no backing file" {
  qemu-img create -q -f qed d.qed 8M
  qemu-io -f qed -c "write -P 1 0 1M" d.qed >/dev/null
  truncate -s $(( $(stat -c %s d.qed) + 3 * 65536 )) d.qed
  poke d.qed 16 Q 2
  sock="$BATS_TEST_TMPDIR/v.sock"
  vg_serve "$sock" "$QED_PLUGIN" file=d.qed
  qemu-io -f raw -c "write -P 5 6M 100k" -c "read -P 1 0 1M" "$(nbd_uri "$sock")" >/dev/null
  vg_stop "$sock"
  qemu-img check d.qed
}

@test "qed valgrind: a corrupt image is refused without memory errors" {
  qemu-img create -q -f qed d.qed 8M
  poke d.qed 8 I 3
  run valgrind --error-exitcode=119 --leak-check=full \
    --errors-for-leak-kinds=definite nbdkit -U - "$QED_PLUGIN" file=d.qed --run true
  echo "$output"
  test "$status" -ne 119
  grep -q "table_size=3" <<<"$output"
  grep -q "ERROR SUMMARY: 0 errors" <<<"$output"
}
