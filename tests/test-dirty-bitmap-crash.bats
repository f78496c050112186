#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter, crash safety: kill -9 the server at a random
# moment of a random concurrent workload, many times.  After each kill
# the persisted bitmap must cover every granule whose contents changed,
# found by comparing the disk before and after, independently of the
# filter and of the workload's own log.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

W () { "$NBD_PYTHON" "$BATS_TEST_DIRNAME/dirty-bitmap-workload.py" "$@"; }

@test "dirty-bitmap crash: kill -9 during random workloads (25 runs)" {
  runs=${DIRTY_BITMAP_CRASH_RUNS:-25}
  # Random initial contents, so that zeroes and trims change data.
  head -c 8M /dev/urandom > disk.raw
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=fine -g 4K
  "$QAD_IMG" bitmap disk.qdb --add coarse -g 64K
  total_changed=0 runs_changed=0
  for run in $(seq 1 "$runs"); do
    "$QAD_IMG" bitmap disk.qdb --clear fine --clear coarse
    cp disk.raw before.raw
    start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
      dirty-bitmap=disk.qdb
    pids=()
    for i in 0 1 2; do
      W run "$(nbd_uri sock)" "$((run * 10 + i))" 100000 "w-$run-$i.log" 40000 \
        >/dev/null 2>&1 &
      pids+=($!)
    done
    # Once the clients are under way (they log each request before
    # sending it), kill somewhere in the next 0 to 300 ms.
    for i in $(seq 1 200); do
      test "$(cat w-$run-*.log 2>/dev/null | wc -l)" -ge 6 && break
      sleep 0.05
    done
    sleep "0.$(( RANDOM % 3 ))$(( RANDOM % 10 ))"
    stop_nbdkit sock KILL
    for i in "${pids[@]}"; do wait "$i" || true; done

    # The file must still be valid ...
    "$QAD_IMG" check disk.qdb >/dev/null
    # ... and cover every granule that changed.
    W changed 4096 before.raw disk.raw > changed-fine
    W changed 65536 before.raw disk.raw > changed-coarse
    W compare disk.qdb fine changed-fine subset
    W compare disk.qdb coarse changed-coarse subset
    n=$(wc -w < changed-fine)
    total_changed=$((total_changed + n))
    test "$n" -eq 0 || runs_changed=$((runs_changed + 1))
  done
  echo "# $runs kill -9 runs ($runs_changed changed the disk), $total_changed changed 4K granules in all, none missed" >&3
  # The workloads must actually have changed the disk, in most runs.
  [ "$runs_changed" -ge $((runs / 2)) ]
}
