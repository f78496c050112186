#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img rebase and amend (issue 10), for QED and add-cow: safe
# rebase keeps the disk's contents (checked against qemu-img rebase
# and through qemu-img/qemu-io), -u and amend change only the header,
# an image in use is refused, and a kill -9 at any moment of a rebase
# (at chosen system calls with strace, and after random delays) leaves
# an image that checks clean and reads the same disk.

load functions.sh
load qed-helpers.sh
load addcow-helpers.sh
load powercut/powercut.sh

setup ()
{
  requires_file "$QAD_IMG"
  requires qemu-img --version
  requires qemu-io --version
  cd "$BATS_TEST_TMPDIR"
}

# make_backings SIZE (bytes): base1.raw (random) and base2.raw, equal to it
# except in every third 4 KiB cluster and 64 KiB shorter.
make_backings ()
{
  local size="$1" c
  random_file base1.raw "$size" 1
  cp base1.raw base2.raw
  for ((c = 0; c < size / 4096; c += 3)); do
    printf 'DIFF' | dd of=base2.raw bs=1 seek=$((c * 4096 + 100)) \
      conv=notrunc status=none
  done
  truncate -s $((size - 65536)) base2.raw
}

# make_qed SIZE: top.qed (4 KiB clusters) over base1.raw with data,
# a zero cluster and unallocated ranges; before.raw is its disk.
make_qed ()
{
  make_backings "$1"
  "$QAD_IMG" create -q -f qed --cluster-size=4096 -b base1.raw -F raw top.qed
  qemu-io -f qed -c "write -P 7 0 8k" -c "write -z 64k 4k" \
    -c "write -P 9 100k 3k" top.qed >/dev/null
  qemu-img convert -f qed -O raw top.qed before.raw
}

# backing_of FILE: the backing name FILE records ("" when none).
backing_of ()
{
  "$QAD_IMG" info --output=json "$1" |
    sed -n 's/^  "backing-filename": "\(.*\)",*$/\1/p'
}

# qed_checks FILE: both checkers accept FILE (leaked clusters, exit 3,
# are allowed: QEMU leaves them too) and its backing name reads.
qed_checks ()
{
  local s
  "$QAD_IMG" check "$1" >check.out 2>&1 && s=0 || s=$?
  test "$s" -eq 0 -o "$s" -eq 3 || { cat check.out; return 1; }
  qemu-img check -f qed "$1" >check.out 2>&1 && s=0 || s=$?
  test "$s" -eq 0 -o "$s" -eq 3 || { cat check.out; return 1; }
  "$QAD_IMG" info "$1" >/dev/null
}

# qed_valid FILE: qed_checks, and FILE reads before.raw.
qed_valid ()
{
  qed_checks "$1" &&
    qemu-img compare -f qed -F raw "$1" "$BATS_TEST_TMPDIR/before.raw" \
      >/dev/null
}

@test "rebase (QED, safe): same disk, same as qemu-img rebase, clean" {
  make_qed $((1 << 20))
  cp top.qed theirs.qed
  run "$QAD_IMG" rebase -b base2.raw -F raw top.qed
  test "$status" -eq 0 && test -z "$output"
  test "$(backing_of top.qed)" = base2.raw
  qemu-img info top.qed | grep -q "^backing file format: raw"
  qemu-img check -f qed top.qed
  "$QAD_IMG" check top.qed
  qemu-img compare -f qed -F raw top.qed before.raw
  qemu-io -f qed -r -c "read -P 7 0 8k" -c "read -P 0 64k 4k" top.qed \
    | grep -vq "Pattern verification failed"
  qemu-img rebase -f qed -b base2.raw -F raw theirs.qed
  qemu-img compare -f qed -F qed top.qed theirs.qed
  qemu-img convert -f qed -O raw top.qed after.raw
  cmp before.raw after.raw
  # Only the differing unallocated clusters were copied: the image
  # holds about a third of the 256 clusters (QEMU's copies the same).
  test "$(stat -c %s top.qed)" -lt $((200 * 4096))
  # Back onto base1: the same disk again.
  "$QAD_IMG" rebase -b base1.raw -F raw top.qed
  qed_valid top.qed
}

@test "rebase -u (QED): only the name and format change" {
  make_qed $((1 << 20))
  cp top.qed theirs.qed
  "$QAD_IMG" rebase -u -b base2.raw -F raw top.qed
  qemu-img rebase -u -f qed -b base2.raw -F raw theirs.qed
  test "$(backing_of top.qed)" = base2.raw
  qemu-img compare -f qed -F qed top.qed theirs.qed
  run qemu-img compare -f qed -F raw top.qed before.raw
  test "$status" -eq 1
  # No -F: the format is probed again (NO_PROBE cleared).
  "$QAD_IMG" rebase -u -b base1.raw top.qed
  "$QAD_IMG" info top.qed | grep -q "^features: *backing_file$"
  qed_valid top.qed
  # A missing backing file is recorded with a warning, as qemu-img -u.
  run "$QAD_IMG" rebase -u -b gone.raw -F raw top.qed
  test "$status" -eq 0
  grep -q "^qad-img: warning: top.qed: the backing file gone.raw does not exist" <<<"$output"
  test "$(backing_of top.qed)" = gone.raw
  # ... unless a backing policy must check it.
  run "$QAD_IMG" rebase --backing-policy=inside -u -b /nowhere/x.raw top.qed
  test "$status" -eq 1
  grep -q "^qad-img: top.qed: the backing file /nowhere/x.raw does not exist, so it cannot be checked against backing-policy=inside" <<<"$output"
  run "$QAD_IMG" rebase --backing-policy=inside -u -b /etc/hostname -F raw top.qed
  test "$status" -eq 1
  grep -q "refused by backing-policy=inside" <<<"$output"
  test "$(backing_of top.qed)" = gone.raw
  # ... but a safe rebase needs the current chain to open.
  run "$QAD_IMG" rebase -b base1.raw top.qed
  test "$status" -eq 1
  grep -q "^qad-img: .*gone.raw" <<<"$output"
}

@test "rebase -b '' (QED): safe removal copies the backing's data" {
  make_qed $((1 << 20))
  cp top.qed unsafe.qed
  cp top.qed theirs.qed
  "$QAD_IMG" rebase -b "" top.qed
  test -z "$(backing_of top.qed)"
  qemu-img info top.qed | grep -vq "^backing file"
  qemu-img rebase -f qed -b "" theirs.qed
  qemu-img compare -f qed -F qed top.qed theirs.qed
  mv base1.raw elsewhere.raw
  qed_valid top.qed
  mv elsewhere.raw base1.raw
  # From no backing file onto one: what it would show is masked.
  "$QAD_IMG" rebase -b base2.raw -F raw top.qed
  test "$(backing_of top.qed)" = base2.raw
  qed_valid top.qed
  # Unsafe removal: unallocated ranges now read zeroes.
  "$QAD_IMG" rebase -u -b "" unsafe.qed
  qemu-io -f qed -r -c "read -P 0 512k 4k" -c "read -P 7 0 8k" unsafe.qed \
    | grep -vq "Pattern verification failed"
  run "$QAD_IMG" rebase -b "" -F raw unsafe.qed
  test "$status" -eq 1
  grep -q "^qad-img: rebase: -F raw: there is no backing file" <<<"$output"
}

@test "rebase (QED): names moved aside; no room for both is refused intact" {
  make_qed $((1 << 20))
  long1="$(printf './%.0s' {1..1000})base1.raw"      # 2009 bytes
  long2="$(printf './%.0s' {1..1010})base2.raw"      # 2029 bytes
  "$QAD_IMG" create -q -f qed --cluster-size=4096 -b "$long1" -F raw long.qed
  test "$(qemu-img info --output=json long.qed | python3 -c '
import json,sys; print(json.load(sys.stdin)["cluster-size"])')" = 4096
  sum="$(md5sum < long.qed)"
  run "$QAD_IMG" rebase -u -b "$long2" -F raw long.qed
  test "$status" -eq 1
  grep -q "^qad-img: long.qed: the QED header area of 4096 bytes cannot hold the new backing name (2029 bytes) beside the current one (2009 bytes at offset 64)" <<<"$output"
  test "$(md5sum < long.qed)" = "$sum"
  # A name that fits beside the current one goes after it.
  "$QAD_IMG" rebase -u -b base2.raw -F raw long.qed
  test "$(peek long.qed 56 I)" = $((64 + 2009))
  test "$(backing_of long.qed)" = base2.raw
  qemu-img check -f qed long.qed
  # The next one goes back to offset 64.
  "$QAD_IMG" rebase -u -b "$long1" -F raw long.qed
  test "$(peek long.qed 56 I)" = 64
  qemu-img info long.qed | grep -q "^backing file: $long1"
}

@test "rebase and amend refuse an image in use, and a loop" {
  requires_file "$QED_PLUGIN"
  requires_addcow
  make_qed $((1 << 20))
  truncate -s 1M disk.raw
  "$QAD_IMG" create -f add-cow disk.add-cow --image=disk.raw -b base1.raw -F raw >/dev/null
  serve_qed "$BATS_TEST_TMPDIR/q" top.qed
  start_addcow "$BATS_TEST_TMPDIR/a"
  sum="$(md5sum < top.qed)"
  for cmd in "rebase -u -b base2.raw" "rebase -b base2.raw" \
             "amend -o backing_file=base2.raw"; do
    run "$QAD_IMG" $cmd top.qed
    test "$status" -eq 1
    grep -q "^qad-img: .*top.qed" <<<"$output"
    run "$QAD_IMG" $cmd disk.add-cow
    test "$status" -eq 1
    grep -q "^qad-img: disk.add-cow: add-cow file is in use by another process" <<<"$output"
  done
  test "$(md5sum < top.qed)" = "$sum"
  stop_nbdkit "$BATS_TEST_TMPDIR/q"
  stop_nbdkit "$BATS_TEST_TMPDIR/a"
  # The image as its own backing, under another name too.
  ln -s top.qed alias.qed
  run "$QAD_IMG" rebase -u -b alias.qed -F qed top.qed
  test "$status" -eq 1
  grep -q "loop" <<<"$output"
  run "$QAD_IMG" rebase -u -b disk.raw disk.add-cow
  test "$status" -eq 1
  test "$(md5sum < top.qed)" = "$sum"
}

# kill_at_syscalls FILE CHECK CMD...: for a spread of indices K, kill
# CMD (working on a fresh copy of FILE) with SIGKILL when it enters its
# K-th pwrite64, fdatasync, rename or fsync, then run CHECK FILE.  Prints how
# many runs ended with the old and with the new backing.
kill_at_syscalls ()
{
  local file="$1" check="$2"; shift 2
  local call n k old=0 new=0
  cp "$file" pristine
  for call in pwrite64 fdatasync rename fsync; do
    cp pristine "$file"
    n="$(strace -f -c -e trace=$call -o counts "$@" >/dev/null 2>&1;
         awk -v c=$call '$NF == c { print $4 }' counts)"
    test -n "$n" || n=0
    for k in $(seq 1 $(( n / 12 + 1 )) "$n") $((n - 2)) $((n - 1)) "$n"; do
      test "$k" -ge 1 || continue
      cp pristine "$file"
      strace -f -o /dev/null -e trace=$call \
        -e inject=$call:signal=KILL:when=$k "$@" >/dev/null 2>&1 || true
      $check "$file" || { echo "bad after kill at $call #$k" >&2; return 1; }
      case "$(backing_of "$file")" in
        base1.raw) old=$((old + 1)) ;;
        base2.raw) new=$((new + 1)) ;;
        *) echo "backing after kill at $call #$k: $(backing_of "$file")" >&2
           return 1 ;;
      esac
    done
  done
  echo "old=$old new=$new"
  test "$old" -gt 0 && test "$new" -gt 0
}

# kill_after_delays FILE CHECK CMD...: kill -9 CMD after delays spread
# over its run time; the same checks.
kill_after_delays ()
{
  local file="$1" check="$2"; shift 2
  local d pid old=0 new=0
  cp "$file" pristine
  for d in 0 0.001 0.003 0.01 0.02 0.05 0.08 0.1 0.15 0.2 0.3 0.5; do
    cp pristine "$file"
    "$@" >/dev/null 2>&1 &
    pid=$!
    sleep "$d"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" || true
    $check "$file" || { echo "bad after kill at ${d}s" >&2; return 1; }
    case "$(backing_of "$file")" in
      base1.raw) old=$((old + 1)) ;;
      base2.raw) new=$((new + 1)) ;;
      *) return 1 ;;
    esac
  done
  echo "old=$old new=$new"
}

@test "rebase (QED): kill -9 at every stage leaves a valid, same disk" {
  requires strace -V
  make_qed $((512 << 10))
  kill_at_syscalls top.qed qed_valid \
    "$QAD_IMG" rebase -b base2.raw -F raw top.qed
  # After any of those kills, running the rebase again completes it.
  "$QAD_IMG" rebase -b base2.raw -F raw top.qed
  test "$(backing_of top.qed)" = base2.raw
  qed_valid top.qed
}

@test "rebase (QED): kill -9 after random delays" {
  make_qed $((8 << 20))
  kill_after_delays top.qed qed_valid \
    "$QAD_IMG" rebase -b base2.raw -F raw top.qed
}

# powercut_states FILE CHECK N CMD...: run CMD in live/ with the
# power-cut recorder, then for N crash states, the systematic ones
# (just before and after each sync, keeping none or all of the
# unsynced writes; at most N/2 of them, spread evenly) and random ones
# (some writes kept, some torn), write the state of live/ into st/ and
# run CHECK st/FILE, which must also name base1.raw (or ./base1.raw)
# or base2.raw.
# Prints how many states had which.
powercut_states ()
{
  local file="$1" check="$2" n="$3"; shift 3
  local i old=0 new=0
  cp -a live/. snap/
  rm -f rec.log
  (cd live && LD_PRELOAD="$PC_RECORDER" POWERCUT_DIR="$PWD" \
     POWERCUT_LOG="$BATS_TEST_TMPDIR/rec.log" "$@")
  echo "$("$PC_BIN/pc-states" rec.log snap count) states give every systematic point"
  for ((i = 0; i < n; i++)); do
    rm -rf st && mkdir st
    "$PC_BIN/pc-states" rec.log snap "$n" 1 "$i" st >st.info
    $check "st/$file" || { cat st.info; return 1; }
    case "$(backing_of "st/$file")" in
      base1.raw|./base1.raw) old=$((old + 1)) ;;
      base2.raw) new=$((new + 1)) ;;
      *) cat st.info; return 1 ;;
    esac
  done
  echo "$n states: old=$old new=$new"
  test "$old" -gt 0 && test "$new" -gt 0
}

@test "rebase (QED): power cut at any point, unsynced writes lost or torn" {
  requires_file "$PC_RECORDER"
  requires_file "$PC_BIN/pc-states"
  mkdir live snap
  cd live
  make_qed $((128 << 10))
  mv before.raw ..
  cd ..
  powercut_states top.qed qed_valid 60 \
    "$QAD_IMG" rebase -b base2.raw -F raw top.qed
  # -u has few records: many random states land between the name and
  # the header writes.  live/ holds the finished rebase (base2.raw at
  # offset 73); "./base1.raw" goes after it, where the file holds
  # zeroes, so a header that outran its name would show.
  rm -rf snap && mkdir snap
  powercut_states top.qed qed_checks 120 \
    "$QAD_IMG" rebase -u -b ./base1.raw -F raw top.qed
}

# make_addcow SIZE: disk.add-cow over base1.raw (4 KiB clusters) with
# some clusters written through the filter; before.raw is the disk.
make_addcow ()
{
  make_backings "$1"
  truncate -s "$1" disk.raw
  "$QAD_IMG" create -f add-cow --cluster-size=4096 disk.add-cow \
    --image=disk.raw -b base1.raw -F raw >/dev/null
  start_addcow "$BATS_TEST_TMPDIR/a"
  nbdsh_on "$BATS_TEST_TMPDIR/a" '
h.pwrite(b"\7" * 8192, 0)
h.zero(4096, 65536)
h.pwrite(b"\11" * 3000, 102400)
h.flush()'
  nbdcopy "$(nbd_uri "$BATS_TEST_TMPDIR/a")" before.raw
  stop_nbdkit "$BATS_TEST_TMPDIR/a"
}

# addcow_valid FILE: checks clean and reads before.raw.
addcow_valid ()
{
  "$QAD_IMG" check "$1" >check.out 2>&1 || { cat check.out; return 1; }
  "$QAD_IMG" compare "$1" "$BATS_TEST_TMPDIR/before.raw" >/dev/null
}

@test "rebase (add-cow): safe keeps the disk as the filter serves it" {
  requires_addcow
  requires_nbdsh
  make_addcow $((1 << 20))
  run "$QAD_IMG" rebase -b base2.raw -F raw disk.add-cow
  test "$status" -eq 0
  test "$(backing_of disk.add-cow)" = base2.raw
  addcow_valid disk.add-cow
  start_addcow "$BATS_TEST_TMPDIR/a"
  nbdcopy "$(nbd_uri "$BATS_TEST_TMPDIR/a")" after.raw
  stop_nbdkit "$BATS_TEST_TMPDIR/a"
  cmp before.raw after.raw
  # An NBD backing cannot be read by a safe rebase.
  run "$QAD_IMG" rebase -b "nbd+unix:///?socket=/run/x.sock" disk.add-cow
  test "$status" -eq 1
  grep -q "^qad-img: rebase: disk.add-cow: a safe rebase reads the backing files" <<<"$output"
  # Unsafe back to base1: the same disk here (the copied clusters hold
  # base1's bytes); safe removal, then the backing is not needed.
  "$QAD_IMG" rebase -u -b base1.raw disk.add-cow
  addcow_valid disk.add-cow
  "$QAD_IMG" rebase -p -b "" disk.add-cow | grep -q "100.00/100%"
  test -z "$(backing_of disk.add-cow)"
  # base1 is random: every cluster was copied, and the header says so
  # (then the backing is never read: even an NBD one is no obstacle).
  "$QAD_IMG" info disk.add-cow | grep -q "^compat features: *0x1 (ALL_ALLOCATED)"
  mv base1.raw elsewhere.raw
  addcow_valid disk.add-cow
  test -z "$(ls | grep tmp)"
  # The format policy of create: a QED file needs -F qed.
  "$QAD_IMG" create -q -f qed q.qed 1M
  run "$QAD_IMG" rebase -u -b q.qed disk.add-cow
  test "$status" -eq 1
  grep -q "starts with a QED header" <<<"$output"
  "$QAD_IMG" rebase -u -b q.qed -F qed disk.add-cow
  "$QAD_IMG" info disk.add-cow | grep -q "^backing file: *q.qed (qed)"
}

@test "rebase (add-cow): kill -9 at every stage leaves a valid, same disk" {
  requires_addcow
  requires_nbdsh
  requires strace -V
  make_addcow $((512 << 10))
  kill_at_syscalls disk.add-cow addcow_valid \
    "$QAD_IMG" rebase -b base2.raw -F raw disk.add-cow
  rm -f disk.add-cow.tmp*       # what a kill before the rename leaves
  "$QAD_IMG" rebase -b base2.raw -F raw disk.add-cow
  addcow_valid disk.add-cow
}

@test "rebase (add-cow): kill -9 after random delays" {
  requires_addcow
  requires_nbdsh
  make_addcow $((32 << 20))
  kill_after_delays disk.add-cow addcow_valid \
    "$QAD_IMG" rebase -b base2.raw -F raw disk.add-cow
}

@test "rebase (add-cow): power cut at any point, unsynced writes lost" {
  requires_addcow
  requires_nbdsh
  requires_file "$PC_RECORDER"
  requires_file "$PC_BIN/pc-states"
  mkdir live snap
  cd live
  make_addcow $((128 << 10))
  mv before.raw ..
  cd ..
  powercut_states disk.add-cow addcow_valid 60 \
    "$QAD_IMG" rebase -b base2.raw -F raw disk.add-cow
}

@test "amend (QED): backing_file and backing_fmt, unknown keys named" {
  make_qed $((1 << 20))
  run "$QAD_IMG" amend -o backing_file=base2.raw,colour=blue top.qed
  test "$status" -eq 1
  test "$output" = "qad-img: amend: top.qed: -o colour: unknown option for the qed format (it records: backing_file,backing_fmt)"
  run "$QAD_IMG" amend -o image_file=x.raw top.qed
  test "$status" -eq 1
  grep -q -- "-o image_file: unknown option for the qed format" <<<"$output"
  test "$(backing_of top.qed)" = base1.raw
  # backing_file alone keeps the recorded format (raw: NO_PROBE).
  "$QAD_IMG" amend -o backing_file=base2.raw top.qed
  qemu-img info top.qed | grep -q "^backing file format: raw"
  test "$(backing_of top.qed)" = base2.raw
  cp top.qed noprobe.qed
  "$QAD_IMG" amend -o backing_file= noprobe.qed
  "$QAD_IMG" info noprobe.qed | grep -q "^features: *none$"
  # The new backing is opened as recorded: a raw file is not QED.
  run "$QAD_IMG" amend -o backing_fmt=qed top.qed
  test "$status" -eq 1
  grep -q "^qad-img: base2.raw: not a QED image" <<<"$output"
  qemu-img create -q -f qed mid.qed 1M
  "$QAD_IMG" amend -o backing_file=mid.qed,backing_fmt=qed top.qed
  "$QAD_IMG" info top.qed | grep -q "^features: *backing_file$"
  qemu-img info top.qed | grep -q "^backing file: mid.qed"
  run "$QAD_IMG" amend -o backing_fmt=vmdk top.qed
  test "$status" -eq 1
  grep -q "^qad-img: top.qed: backing format must be raw or qed, not vmdk" <<<"$output"
  "$QAD_IMG" amend -o backing_file= top.qed
  test -z "$(backing_of top.qed)"
  run "$QAD_IMG" amend -o backing_fmt=raw top.qed
  test "$status" -eq 1
  grep -q "the image has no backing file" <<<"$output"
  qemu-img check -f qed top.qed
}

@test "amend (add-cow): image_file, backing_file, backing_fmt" {
  make_backings $((1 << 20))
  truncate -s 1M disk.raw
  "$QAD_IMG" create -f add-cow --cluster-size=4096 disk.add-cow \
    --image=disk.raw -b base1.raw -F raw >/dev/null
  cp disk.raw moved.raw
  "$QAD_IMG" amend -o image_file=moved.raw disk.add-cow
  "$QAD_IMG" info disk.add-cow | grep -q "^image file: *moved.raw (raw)$"
  run "$QAD_IMG" amend -o image_file=base1.raw disk.add-cow
  test "$status" -eq 1
  run "$QAD_IMG" amend -o image_file=nowhere.raw disk.add-cow
  test "$status" -eq 1
  grep -q "^qad-img: disk.add-cow: image file ./nowhere.raw: No such file" <<<"$output"
  # A larger image than the bitmap describes is refused.
  truncate -s 256M big.raw
  run "$QAD_IMG" amend -o image_file=big.raw disk.add-cow
  test "$status" -eq 1
  grep -q "the image grew since the sidecar was made" <<<"$output"
  "$QAD_IMG" amend -o backing_file=base2.raw,backing_fmt=raw disk.add-cow
  "$QAD_IMG" info disk.add-cow | grep -q "^backing file: *base2.raw (raw)"
  run "$QAD_IMG" amend -o backing_fmt=qcow2 disk.add-cow
  test "$status" -eq 1
  grep -q "^qad-img: -F=qcow2: the backing format must be raw or qed" <<<"$output"
  run "$QAD_IMG" amend -o size=2M disk.add-cow
  test "$status" -eq 1
  test "$output" = "qad-img: amend: disk.add-cow: -o size: unknown option for the add-cow format (it records: image_file,backing_file,backing_fmt)"
  "$QAD_IMG" amend -o backing_file= disk.add-cow
  "$QAD_IMG" info disk.add-cow | grep -q "^backing file: *none"
  "$QAD_IMG" check disk.add-cow
}

@test "rebase and amend: --help, -q, usage errors" {
  run "$QAD_IMG" rebase --help
  test "$status" -eq 0 && grep -q "^usage: qad-img rebase" <<<"$output"
  run "$QAD_IMG" amend --help
  test "$status" -eq 0 && grep -q "^usage: qad-img amend" <<<"$output"
  make_qed $((1 << 20))
  "$QAD_IMG" rebase -p -b base2.raw -F raw top.qed | grep -q "(100.00/100%)"
  test -z "$("$QAD_IMG" rebase -q -p -b base1.raw -F raw top.qed)"
  test "$(backing_of top.qed)" = base1.raw
  run "$QAD_IMG" rebase top.qed
  test "$status" -eq 1 && grep -q "^qad-img: usage: qad-img rebase" <<<"$output"
  run "$QAD_IMG" amend top.qed
  test "$status" -eq 1 && grep -q "^qad-img: usage: qad-img amend" <<<"$output"
  run "$QAD_IMG" rebase -U -b base1.raw top.qed
  test "$status" -eq 1 && grep -q "^qad-img: rebase: -U" <<<"$output"
  run "$QAD_IMG" amend -p -o backing_fmt=raw top.qed
  test "$status" -eq 1 && grep -q "^qad-img: amend: -p is for verbs" <<<"$output"
}
