#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img commit IMAGE, as qemu-img commit: a QED image or an add-cow
# file written into its raw or QED backing file, then emptied; the
# result compared with qemu-img commit on a copy and checked by
# qemu-img; refusals (no backing, a format we cannot write, files in
# use); -p; a kill -9 at every write and sync, and at random moments,
# loses nothing and leaves every file valid.

load functions.sh
load tool-crash-helpers.sh

setup () { tool_test_setup; }

# A QED image top.qed (4 MiB) over BACKING (a raw file or a QED image,
# per $1), with data, a zero cluster and an unallocated range; want.raw
# is what it reads as.
make_qed_overlay ()
{
  qemu-img create -q -f raw base.raw 4M
  qemu-io -f raw -c "write -P 1 0 4M" base.raw >/dev/null
  if test "$1" = qed; then
    qemu-img convert -O qed base.raw base.qed
    rm base.raw
    qemu-img create -q -f qed -b base.qed -F qed top.qed 4M
  else
    qemu-img create -q -f qed -b base.raw -F raw top.qed 4M
  fi
  qemu-io -c "write -P 9 64k 1M" -c "write -z 2M 128k" \
    -c "write -P 7 3M 4k" top.qed >/dev/null
  qemu-img convert -O raw top.qed want.raw
}

# Every guest byte of top.qed comes from the backing file.
qed_empty ()
{
  test -z "$(qemu-img map --output=json top.qed | grep '"depth": 0, "present": true')"
}

@test "commit: QED into raw, as qemu-img commit" {
  make_qed_overlay raw
  mkdir q && cp top.qed base.raw q/
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 0 && test "$output" = "Image committed."
  (cd q && qemu-img commit -q top.qed)
  qemu-img compare base.raw want.raw
  qemu-img compare base.raw q/base.raw
  qemu-img compare top.qed q/top.qed
  qemu-img compare top.qed want.raw
  qemu-img check top.qed
  "$QAD_IMG" check top.qed
  qed_empty
  # Emptied: the file is cut back to its header and L1 table.
  test "$(stat -c %s top.qed)" -lt "$(stat -c %s q/top.qed)"
}

@test "commit: QED into QED, as qemu-img commit" {
  make_qed_overlay qed
  mkdir q && cp top.qed base.qed q/
  "$QAD_IMG" commit top.qed
  (cd q && qemu-img commit -q top.qed)
  qemu-img check base.qed
  "$QAD_IMG" check base.qed
  qemu-img compare base.qed want.raw
  qemu-img compare base.qed q/base.qed
  qemu-img compare top.qed q/top.qed
  qemu-img check top.qed
  qed_empty
}

@test "commit: a smaller backing file grows to the image's size" {
  qemu-img create -q -f raw base.raw 1M
  qemu-io -f raw -c "write -P 1 0 1M" base.raw >/dev/null
  qemu-img create -q -f qed -b base.raw -F raw top.qed 3M
  qemu-io -c "write -P 9 2M 64k" top.qed >/dev/null
  qemu-img convert -O raw top.qed want.raw
  "$QAD_IMG" commit top.qed
  test "$(stat -c %s base.raw)" -eq $((3 << 20))
  qemu-img compare -s base.raw want.raw
  qemu-img compare top.qed want.raw
}

# An add-cow file a.add-cow over a.raw (2 MiB) and the backing file
# base.$1, clusters 1 and 5 written through the filter.
make_addcow ()
{
  requires_file "$ADDCOW_FILTER"
  requires_nbdsh
  qemu-img create -q -f raw base.raw 2M
  qemu-io -f raw -c "write -P 1 0 2M" base.raw >/dev/null
  if test "$1" = qed; then
    qemu-img convert -O qed base.raw base.qed
    rm base.raw
  fi
  truncate -s 2M a.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=a.raw -b "base.$1" \
    -F "$1" >/dev/null
  start_nbdkit sock --filter="$ADDCOW_FILTER" file a.raw addcow=a.add-cow
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"\x09" * 70000, 65536)' \
    -c 'h.pwrite(b"\x07" * 100, 5 * 65536 + 10)' -c 'h.flush()'
  stop_nbdkit sock
  qemu-img create -q -f raw want.raw 2M
  qemu-io -f raw -c "write -P 1 0 2M" -c "write -P 9 64k 70000" \
    -c "write -P 7 327690 100" want.raw >/dev/null
  "$QAD_IMG" compare a.add-cow want.raw
}

@test "commit: add-cow into raw: the disk reads the backing file through the sidecar" {
  make_addcow raw
  "$QAD_IMG" info --output=json a.add-cow | grep -q '"clusters-in-image": 3'
  "$QAD_IMG" commit a.add-cow
  qemu-img compare base.raw want.raw
  "$QAD_IMG" compare a.add-cow want.raw
  "$QAD_IMG" check a.add-cow
  "$QAD_IMG" info --output=json a.add-cow | grep -q '"clusters-in-image": 0'
  # The image's copies are given back (read as zeroes on their own).
  test "$(stat -c %s a.raw)" -eq $((2 << 20))
  cmp a.raw <(head -c $((2 << 20)) /dev/zero)
}

@test "commit: add-cow into QED, and with ALL_ALLOCATED" {
  make_addcow qed
  "$QAD_IMG" commit a.add-cow
  qemu-img check base.qed
  qemu-img compare base.qed want.raw
  "$QAD_IMG" compare a.add-cow want.raw
  # ALL_ALLOCATED: the whole image goes into the backing file, then
  # every bit is cleared and the flag too.
  qemu-io -f raw -c "write -P 4 0 2M" a.raw >/dev/null
  python3 -c 'import struct,sys
with open("a.add-cow", "r+b") as f:
    f.seek(32); f.write(struct.pack("<Q", 1))'
  "$QAD_IMG" commit a.add-cow
  "$QAD_IMG" info --output=json a.add-cow | grep -q '"all-allocated": false'
  qemu-io -f qed -c "read -P 4 0 2M" base.qed >/dev/null
  "$QAD_IMG" check a.add-cow
}

@test "commit: refusals name the file and the reason" {
  qemu-img create -q -f qed alone.qed 1M
  run "$QAD_IMG" commit alone.qed
  test "$status" -eq 1
  test "$output" = "qad-img: alone.qed: the image has no backing file: nothing to commit into"
  qemu-img create -q -f qcow2 base.qcow2 1M
  qemu-img create -q -f qed -b base.qcow2 -F qcow2 top.qed 1M
  qemu-io -c "write -P 9 0 64k" top.qed >/dev/null
  cp base.qcow2 before.qcow2
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 1
  [[ "$output" == *"backing file base.qcow2 is a qcow2 file: qad-img commits only into raw or QED files"* ]]
  cmp base.qcow2 before.qcow2
  "$QAD_IMG" create -f qdb x.qdb 1M
  run "$QAD_IMG" commit x.qdb
  test "$status" -eq 1
  [[ "$output" == *"commit needs a QED image or an add-cow file"* ]]
  run "$QAD_IMG" commit -U top.qed
  test "$status" -eq 1
  "$QAD_IMG" commit --help | grep -q "^usage: qad-img commit"
}

@test "commit: refused while the image or its backing file is in use" {
  make_qed_overlay raw
  cp base.raw base.before
  start_nbdkit sock "$QED_PLUGIN" file=top.qed
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 1
  [[ "$output" == *"top.qed"* ]]
  stop_nbdkit sock
  # The server's lock on base.raw may outlive its exit by a moment:
  # start qemu-nbd until it holds the file.
  for i in $(seq 50); do
    qemu-nbd -r -f raw -k "$PWD/qsock" base.raw &
    echo $! >> "$(_pids_file)"
    for j in $(seq 50); do test -S qsock && break 2; kill -0 $! 2>/dev/null || break; sleep 0.1; done
    sleep 0.1
  done
  test -S qsock
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 1
  [[ "$output" == *"base.raw"*"another process"* ]]
  cmp base.raw base.before
  qemu-img compare top.qed want.raw
}

@test "commit: an add-cow file in use, or a QED backing file not closed cleanly, is refused" {
  make_addcow raw
  cp base.raw base.before
  start_nbdkit sock --filter="$ADDCOW_FILTER" file a.raw addcow=a.add-cow
  run "$QAD_IMG" commit a.add-cow
  test "$status" -eq 1
  [[ "$output" == *"a.add-cow"* ]]
  stop_nbdkit sock
  cmp base.raw base.before
  "$QAD_IMG" compare a.add-cow want.raw
  # A QED backing file with NEED_CHECK is repaired first, by check.
  make_qed_overlay qed
  python3 -c 'import struct
with open("base.qed", "r+b") as f:
    f.seek(16); v = struct.unpack("<Q", f.read(8))[0]
    f.seek(16); f.write(struct.pack("<Q", v | 2))'
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 1
  [[ "$output" == *"base.qed: the image has NEED_CHECK set"* ]]
  qemu-img compare top.qed want.raw
}

@test "commit: the backing file is synced before the image changes" {
  mkdir r q c
  (cd r && make_qed_overlay raw)
  (cd q && make_qed_overlay qed)
  (cd c && make_addcow raw)
  log_calls r "$PWD/r.calls" "$QAD_IMG" commit top.qed
  durable_before r.calls base.raw top.qed
  # The cleared L1 table is durable before the file is cut back (else
  # a power cut could keep the cut and lose the clearing).
  durable_before r.calls top.qed top.qed truncate
  log_calls q "$PWD/q.calls" "$QAD_IMG" commit top.qed
  durable_before q.calls base.qed top.qed
  log_calls c "$PWD/c.calls" "$QAD_IMG" commit a.add-cow
  durable_before c.calls base.raw a.add-cow
}

@test "commit: -p shows progress" {
  make_qed_overlay raw
  run "$QAD_IMG" commit -p top.qed
  test "$status" -eq 0
  [[ "$output" == *"(100.00/100%)"* ]]
  [[ "$output" == *"Image committed." ]]
}

@test "commit: -p progress only when asked, -q silences it" {
  make_qed_overlay raw
  cp top.qed top2.qed
  run "$QAD_IMG" commit top.qed
  test "$status" -eq 0 && test "$output" = "Image committed."
  # Back to the overlay, over the same backing, for a silent run.
  qemu-img create -q -f raw base.raw 4M
  qemu-io -f raw -c "write -P 1 0 4M" base.raw >/dev/null
  test -z "$("$QAD_IMG" commit -p -q top2.qed)"
  qemu-img compare base.raw want.raw
}

@test "commit: --output=json (and --json) reports what was committed" {
  make_qed_overlay qed
  # 1 MiB of data (16 clusters), a 128 KiB zero range and one cluster.
  "$QAD_IMG" commit --output=json top.qed | json_fields filename=top.qed \
    format=qed backing-filename=base.qed backing-filename-format=qed \
    virtual-size=$((4 << 20)) bytes-committed=$(((1 << 20) + (3 << 16)))
  qemu-img compare base.qed want.raw
  # Nothing left to commit: nothing written.
  "$QAD_IMG" commit --json top.qed | json_fields filename=top.qed \
    format=qed backing-filename=base.qed backing-filename-format=qed \
    virtual-size=$((4 << 20)) bytes-committed=0
  rm -f base.* top.qed want.raw
  # add-cow: three clusters in the image.  -p prints no progress into
  # the document.
  make_addcow raw
  "$QAD_IMG" commit -p --json a.add-cow > out.json
  json_fields filename=a.add-cow format=add-cow backing-filename=base.raw \
    backing-filename-format=raw virtual-size=$((2 << 20)) \
    bytes-committed=$((3 << 16)) < out.json
  qemu-img compare base.raw want.raw
  # qad-img(1) documents every key, in its example object.
  documented_keys commit < out.json
  # Failures print no document.
  run "$QAD_IMG" commit --output=json base.raw
  test "$status" -ne 0
  ! grep -q "{" <<<"$output"
}

verify_qed_commit ()
{
  check_ok top.qed qemu || return 1
  if test -f base.qed; then check_ok base.qed qemu || return 1; fi
  qemu-img compare top.qed ../want.raw >/dev/null || return 1
  # Running commit again finishes the job.
  "$QAD_IMG" commit top.qed >/dev/null || return 1
  qemu-img compare base.* ../want.raw >/dev/null &&
    qemu-img compare top.qed ../want.raw >/dev/null &&
    qemu-img check top.qed >/dev/null && qed_empty
}

verify_addcow_commit ()
{
  check_ok a.add-cow || return 1
  "$QAD_IMG" compare a.add-cow ../want.raw >/dev/null || return 1
  "$QAD_IMG" commit a.add-cow >/dev/null || return 1
  "$QAD_IMG" compare a.add-cow ../want.raw >/dev/null &&
    qemu-img compare base.* ../want.raw >/dev/null
}

@test "commit: a kill -9 at every write and sync loses nothing" {
  mkdir r q
  (cd r && make_qed_overlay raw)
  cp r/want.raw .
  n=$(kill_at_every_call r verify_qed_commit "$QAD_IMG" commit top.qed)
  echo "# QED into raw: $n crash points" >&3
  (cd q && make_qed_overlay qed && rm want.raw)
  n=$(kill_at_every_call q verify_qed_commit "$QAD_IMG" commit top.qed)
  echo "# QED into QED: $n crash points" >&3
}

@test "commit: add-cow, a kill -9 at every write and sync loses nothing" {
  mkdir r
  (cd r && make_addcow raw && rm want.raw)
  make_addcow raw >/dev/null
  n=$(kill_at_every_call r verify_addcow_commit "$QAD_IMG" commit a.add-cow)
  echo "# add-cow into raw: $n crash points" >&3
}

@test "commit: kill -9 at random moments of a long commit" {
  mkdir big
  (cd big &&
     qemu-img create -q -f raw base.raw 64M &&
     qemu-io -f raw -c "write -P 1 0 64M" base.raw >/dev/null &&
     qemu-img create -q -f qed -o cluster_size=4096 -b base.raw -F raw \
       top.qed 64M)
  (cd big && for i in $(seq 0 8 63); do
     echo "write -P $((i % 200 + 2)) ${i}M 3M"; done |
     qemu-io top.qed >/dev/null && qemu-img convert -O raw top.qed ../want.raw)
  killed=0
  for delay in 0.002 0.01 0.03 0.05 0.08 0.12 0.2 0.3; do
    rm -rf k && cp -a big k
    cd k
    "$QAD_IMG" commit top.qed >/dev/null & pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
    wait "$pid" || true
    cd ..
    (cd k && check_ok top.qed qemu &&
       qemu-img compare top.qed ../want.raw >/dev/null &&
       "$QAD_IMG" commit top.qed >/dev/null &&
       qemu-img compare base.raw ../want.raw >/dev/null &&
       qed_empty) || { echo "failed after a kill at ${delay}s" >&2; false; }
  done
  echo "# $killed of 8 commits killed before they ended" >&3
  test "$killed" -ge 1
}
