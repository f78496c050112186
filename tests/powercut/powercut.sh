# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers for the power-cut tests (test-powercut-*.bats).  Load after
# functions.sh.
#
# One run: the object's files are made in live/ (by a first, clean
# server run where the server creates them), copied to snap/, then a
# server with the recorder preloaded serves live/ while pc-workload
# drives it from several connections; the server is killed.  pc-check
# then builds POWERCUT_STATES crash states from the recording and checks
# each in-process through common/, and POWERCUT_SAMPLES of them are
# written out and reopened through a real server (nbdkit, and
# qemu-img check for QED) and read with nbdcopy.
#
# Environment:
#   POWERCUT_STATES   crash states per run (default 2000; the long mode
#                     of the README uses 100000)
#   POWERCUT_SAMPLES  states reopened through a real server (default 20)
#   POWERCUT_SEED     seed of the workload and of the states (default 1)
#
# Set by tests: PC_SIZE (the disk, default 1 MiB), PC_FILTERS, PC_INNER
# and PC_PARAMS (pc_server_args), PC_COMMAND (a shell command that the
# workload runs halfway, while its connections go on).

PC_BIN="$abs_top_builddir/tests/powercut"
PC_RECORDER="$PC_BIN/.libs/powercut-recorder.so"
PC_SIZE=${PC_SIZE:-$((1024 * 1024))}
PC_CONNS=${PC_CONNS:-3}
PC_OPS=${POWERCUT_OPS:-150}
PC_STATES=${POWERCUT_STATES:-2000}
PC_SAMPLES=${POWERCUT_SAMPLES:-20}
PC_SEED=${POWERCUT_SEED:-1}

pc_requires ()
{
  requires_file "$PC_RECORDER"
  requires_file "$PC_BIN/pc-check"
  requires_file "$PC_BIN/pc-workload"
  requires nbdcopy --version
  cd "$BATS_TEST_TMPDIR"
  mkdir -p live snap
  # The checker rewrites the image of every state and the library
  # fdatasyncs it: use memory when there is some.
  if test -d /dev/shm && test -w /dev/shm; then
    ln -s "$(mktemp -d /dev/shm/powercut.XXXXXX)" work
  else
    mkdir work
  fi
}

# Remove the scratch directory in memory as well.
pc_teardown ()
{
  cleanup_servers
  if test -L "$BATS_TEST_TMPDIR/work"; then
    rm -rf "$(readlink "$BATS_TEST_TMPDIR/work")"
  fi
}

# pc_random FILE SIZE SEED: FILE gets SIZE pseudo-random bytes.
pc_random ()
{
  python3 -c '
import random, sys
r = random.Random(int(sys.argv[3]))
sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[2]))))
' "$1" "$2" "$3" > "$1"
}

# pc_server_args OBJECT DIR: the nbdkit arguments that serve the
# object's files in DIR.  PC_FILTERS (outermost filters), PC_INNER
# (filters between the object's filter and the plugin) and PC_PARAMS
# (their parameters) are added when set.
pc_server_args ()
{
  local obj="$1" d="$2"
  case "$obj" in
    qed) echo ${PC_FILTERS:-} "$QED_PLUGIN" "file=$d/disk.qed" ;;
    addcow)
      if test -n "${PC_ADDCOW_LOCAL:-}"; then
        # The filter writes disk.raw itself; the plugin below serves
        # the backing (the label is the same in every state's copy).
        echo ${PC_FILTERS:-} "--filter=$ADDCOW_FILTER" ${PC_INNER:-} \
             file "$d/base.raw" "addcow=$d/disk.add-cow" \
             "addcow-local-image=$d/disk.raw" addcow-backing-label=base.raw \
             addcow-cluster-size=4K
      else
        echo ${PC_FILTERS:-} "--filter=$ADDCOW_FILTER" ${PC_INNER:-} \
             file "$d/disk.raw" \
             "addcow=$d/disk.add-cow" "addcow-backing=$d/base.raw" \
             addcow-cluster-size=4K
      fi ;;
    dirty-bitmap)
      echo ${PC_FILTERS:-} "--filter=$DIRTY_BITMAP_FILTER" ${PC_INNER:-} \
           file "$d/disk.raw" \
           "dirty-bitmap=$d/disk.qdb" dirty-bitmap-name=b1 \
           dirty-bitmap-granularity=4K ;;
  esac
  echo ${PC_PARAMS:-}
}

# pc_record OBJECT SERVER...: snapshot live/, then run the workload
# against SERVER (a command line listening on $PWD/rec.sock) with the
# recorder preloaded, and kill the server.
pc_record ()
{
  local obj="$1"; shift
  cp -a live/. snap/
  rm -f rec.log wl.log
  LD_PRELOAD="${NBDKIT_PRELOAD:+$NBDKIT_PRELOAD:}$PC_RECORDER" \
  POWERCUT_DIR="$PWD/live" POWERCUT_LOG="$PWD/rec.log" \
    "$@" >rec.sock.log 2>&1 &
  local pid=$! i
  echo "$pid" >> "$(_pids_file)"
  for i in $(seq 1 300); do
    test -S rec.sock && break
    kill -0 "$pid" 2>/dev/null || { cat rec.sock.log; return 1; }
    sleep 0.1
  done
  if ! "$PC_BIN/pc-workload" "nbd+unix:///?socket=$PWD/rec.sock" \
       $PC_SIZE $PC_CONNS $PC_OPS $PC_SEED wl.log \
       ${PC_COMMAND:+"$PC_COMMAND"}; then
    echo "the workload failed; the server said:"
    cat rec.sock.log
    return 1
  fi
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  test -s rec.log
}

# pc_record_nbdkit OBJECT: first a clean run that creates the files,
# then the recorded one.
pc_record_nbdkit ()
{
  local obj="$1"
  # shellcheck disable=SC2046
  start_nbdkit "$PWD/prep.sock" $(pc_server_args "$obj" "$PWD/live")
  stop_nbdkit "$PWD/prep.sock"
  # shellcheck disable=SC2046
  pc_record "$obj" nbdkit -U "$PWD/rec.sock" -f \
    $(pc_server_args "$obj" "$PWD/live")
}

# pc_record_fresh OBJECT: the recorded server creates the object's
# files itself (sidecar, QDB file): crash states cover the creation.
pc_record_fresh ()
{
  local obj="$1"
  # shellcheck disable=SC2046
  pc_record "$obj" nbdkit -U "$PWD/rec.sock" -f \
    $(pc_server_args "$obj" "$PWD/live")
}

# pc_check OBJECT [STATES]: check the crash states in-process; sets
# $status and $output (bats run) and prints the output.
pc_check ()
{
  run "$PC_BIN/pc-check" check "$1" rec.log snap wl.log work \
      "${2:-$PC_STATES}" "$PC_SEED"
  echo "$output"
  # The summary goes to the TAP log even when the test passes.
  echo "# $(tail -n 1 <<<"$output")" >&3
}

# pc_qemu_img_check IMAGE STATE before|after
pc_qemu_img_check ()
{
  local features
  run qemu-img check "$1"
  echo "state $2: qemu-img check $3 reopening: status $status"
  test "$status" -eq 0 -o "$status" -eq 3 && return 0
  echo "$output"
  # Corruption (status 2) is allowed before the repair on open, in an
  # image with NEED_CHECK (feature bit 1 of the header at byte 16).
  features=$(od -An -tu1 -j16 -N1 "$1" | tr -d ' ')
  test "$3" = before -a "$status" -eq 2 && test $((features & 2)) -ne 0
}

# pc_samples OBJECT: reopen PC_SAMPLES states, spread over all, through
# a real nbdkit and check what it reads.
pc_samples ()
{
  local obj="$1" n i k sock
  for k in $(seq 0 $((PC_SAMPLES - 1))); do
    i=$(( (k * PC_STATES) / PC_SAMPLES + k % 7 ))
    test "$i" -lt "$PC_STATES" || i=$((PC_STATES - 1))
    rm -rf "s$k" && mkdir "s$k"
    "$PC_BIN/pc-check" materialize "$obj" rec.log snap wl.log work \
      "$PC_STATES" "$PC_SEED" "$i" "$PWD/s$k"
    # QED: qemu-img check finds no corruption (leaks allowed), except
    # in an image with NEED_CHECK, which the plugin repairs on open:
    # then it must be clean after the server has closed it.
    test "$obj" != qed || pc_qemu_img_check "s$k/disk.qed" "$i" before
    sock="$PWD/s$k.sock"
    # shellcheck disable=SC2046
    start_nbdkit "$sock" $(pc_server_args "$obj" "$PWD/s$k")
    nbdcopy "$(nbd_uri "$sock")" "s$k.read"
    stop_nbdkit "$sock"
    test "$obj" != qed || pc_qemu_img_check "s$k/disk.qed" "$i" after
    "$PC_BIN/pc-check" verify-raw "$obj" rec.log snap wl.log work \
      "$PC_STATES" "$PC_SEED" "$i" "s$k.read"
    rm -rf "s$k" "s$k.read"
  done
}

# pc_expect_caught: the last pc_check must have failed with data loss.
pc_expect_caught ()
{
  test "$status" -eq 1
  grep -Eq '[1-9][0-9]* failed' <<<"$output"
}
