#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Simulated power cuts of the dirty-bitmap filter over nbdkit's file
# plugin (tests/powercut/): in every crash state the QDB file parses,
# every granule that differs from the disk before the workload is
# dirty in it, and every flushed or FUA write is on the disk.  Strict
# and lazy tracking, and a freeze halfway through the workload.  The
# checker must catch flushes that are thrown away (nbdkit's fua filter
# with fuamode=discard above the filter), a bitmap whose fdatasyncs do
# not happen and a live command whose rename is not made durable (the
# recorder's POWERCUT_LOSE_* fault injection).

load functions.sh
load powercut/powercut.sh

teardown () { pc_teardown; }

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  pc_requires
  pc_random live/disk.raw $PC_SIZE 5
}

@test "powercut dirty-bitmap: over the file plugin" {
  pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap
  test "$status" -eq 0
  pc_samples dirty-bitmap
}

# The QDB file is made by the recorded server: it is written under a
# new name and renamed over the empty file, so a crash while the server
# starts leaves the empty file (filled again at the next start) or the
# whole new one.  pc-check's status 3 (a file the filter refuses) was a
# known failure before that; it fails the test now.
@test "powercut dirty-bitmap: the server creates the QDB file" {
  pc_record_fresh dirty-bitmap
  pc_check dirty-bitmap $((PC_STATES / 2))
  test "$status" -eq 0
}

@test "powercut dirty-bitmap: the checker catches discarded flushes" {
  requires_filter fua
  PC_FILTERS=--filter=fua PC_PARAMS=fuamode=discard \
    pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap 500
  pc_expect_caught
}

# Lazy tracking (dirty-bitmap-tracking=lazy): what is made durable
# before a write is passed down is the region map; the fine bits are
# written by checkpoints (after each flush here, and every second),
# which then clear the regions not written since.  After a crash the
# reader ORs the marked regions into the bitmaps, and the result must
# still cover every granule that changed.  2 MiB in 1 MiB regions, so
# that regions are cleared and marked again during the run.
lazy_params="dirty-bitmap-tracking=lazy dirty-bitmap-region-size=1M dirty-bitmap-checkpoint-interval=1"

@test "powercut dirty-bitmap: lazy tracking" {
  PC_SIZE=$((2 << 20))
  pc_random live/disk.raw $PC_SIZE 5
  PC_PARAMS="$lazy_params" pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap $((PC_STATES / 2))
  test "$status" -eq 0
  # The region map of an unclean shutdown added granules in some states
  # (pc-check counts them as "repaired on open").
  grep -Eq '[1-9][0-9]* repaired on open' <<<"$output"
  PC_PARAMS="$lazy_params" PC_SAMPLES=8 pc_samples dirty-bitmap
}

# A server that passes writes down before the region map is durable
# must be caught (a changed granule that is clean in the bitmap even
# after the region map): the recorder does not log the fdatasyncs of
# the QDB file (region map commits and checkpoints), so the crash
# states may lose what they were meant to make durable.
@test "powercut dirty-bitmap: lazy: the checker catches an unsynced region map" {
  PC_SIZE=$((2 << 20))
  pc_random live/disk.raw $PC_SIZE 5
  PC_PARAMS="$lazy_params" POWERCUT_LOSE_FDATASYNC=disk.qdb \
    pc_record_nbdkit dirty-bitmap
  pc_check dirty-bitmap 500
  pc_expect_caught
  grep -q 'changed but is clean in bitmap' <<<"$output"
}

# A freeze during the workload: halfway, "--add b2 --freeze b1" comes
# through the control socket while the connections go on writing (each
# first write to a granule is then copied into the scratch file before
# it is passed down).  In every crash state the command is all there
# or not at all (b1 enabled and no b2, or b1 disabled and b2 enabled),
# every changed granule is dirty in b1 or b2, and reopened states serve
# (b1 is an ordinary disabled bitmap: the freeze and its scratch file
# do not survive).  Strict and lazy tracking.
freeze_record ()
{
  mkdir -p scratch
  params="dirty-bitmap-control=$PWD/ctl dirty-bitmap-scratch-dir=$PWD/scratch $*"
  PC_PARAMS="$params" \
  PC_COMMAND="'$QAD_IMG' bitmap --connect='$PWD/ctl' --add b2 --freeze b1 &&
              sleep 0.3 && '$QAD_IMG' info --json --connect='$PWD/ctl' >info.json" \
    pc_record_nbdkit dirty-bitmap
  # Writes came after the freeze (b2 tracks only those).
  python3 -c '
import json
b = {x["name"]: x for x in json.load(open("info.json"))["bitmaps"]}
assert b["b1"]["frozen"] and b["b2"]["dirty-bytes"] > 0, b
'
  # The scratch file was unlinked from the start: nothing is left.
  [ -z "$(ls -A scratch)" ]
}

freeze_run ()
{
  freeze_record "$@"
  pc_check dirty-bitmap $((PC_STATES / 2))
  test "$status" -eq 0
  PC_PARAMS="$params" PC_SAMPLES=8 pc_samples dirty-bitmap
}

@test "powercut dirty-bitmap: writes during a freeze" {
  freeze_run
}

@test "powercut dirty-bitmap: writes during a freeze, lazy tracking" {
  PC_SIZE=$((2 << 20))
  pc_random live/disk.raw $PC_SIZE 5
  freeze_run "$lazy_params"
}

# A command that is not durable before writes go on (the directory
# fsync after the rename of the new QDB file is lost, so a state may
# still hold the file of before the freeze, without b2) must be caught:
# a granule written after the freeze is then clean in b1.
@test "powercut dirty-bitmap: freeze: the checker catches a command not made durable" {
  POWERCUT_LOSE_DIRSYNC=1 freeze_record
  pc_check dirty-bitmap 500
  pc_expect_caught
  grep -q 'changed but is clean in bitmap b1' <<<"$output"
}
