#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# QED plugin, I/O errors: with tests/fault-inject.so, fail each write,
# sync, truncate and fallocate call site of the server in turn (EIO,
# then ENOSPC), over an image without and with a backing file and one
# whose open runs the repair, and check the rules of the man page
# (fault-driver.py says which).  FAULT_DEPTH=4 tells call sites apart
# by more of their stack, so more paths are injected (long mode).

load functions.sh
load fault-helpers.sh

setup ()
{
  requires_file "$QED_PLUGIN"
  requires_file "$TESTS_BIN/.libs/fault-inject.so"
  requires qemu-img --version
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
}

@test "qed faults: every write, sync, truncate and fallocate call site fails in turn" {
  run env SHIM="$TESTS_BIN/.libs/fault-inject.so" QED_PLUGIN="$QED_PLUGIN" \
    "$NBD_PYTHON" "$BATS_TEST_DIRNAME/fault-driver.py" qed "$BATS_TEST_TMPDIR"
  echo "$output"
  test "$status" -eq 0
  echo "# ${lines[-1]}" >&3
  # Every kind the server uses was injected, sync with poison.
  for k in write sync truncate fallocate; do
    grep -q "^# qed .* $k #.* EIO at " <<<"$output"
  done
  grep -q "^# qed .* sync #.*poisoned" <<<"$output"
  grep -q "^# qed .* ENOSPC .*failed (ENOSPC), not poisoned" <<<"$output"
}

@test "qed faults: a flush after a failed fdatasync is refused, also after the error clears" {
  qemu-img create -q -f qed disk.qed 1M
  LD_PRELOAD="$PRELOAD" NBDKIT_PRELOAD="$PRELOAD" \
  FAULT_PATH="$BATS_TEST_TMPDIR/disk.qed" FAULT_CALL=sync \
  FAULT_SWITCH="$BATS_TEST_TMPDIR/fail-now" FAULT_NTH=1 \
    start_nbdkit sock "$QED_PLUGIN" file=disk.qed
  nbdsh -u "$(nbd_uri sock)" -c '
import errno, os
h.pwrite(b"a" * 4096, 0)
h.flush()
h.pwrite(b"b" * 4096, 0)                 # in place, not durable yet
open("fail-now", "w").close()            # the next fdatasync fails, once
try:
    h.flush(); assert False, "flush succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
os.unlink("fail-now")                    # fdatasync would succeed again
assert h.pread(4096, 0) == b"b" * 4096   # reads still work
'"$ALL_REFUSED_PY"
  test "$(grep -c "refusing every further write" sock.log)" -eq 1
  stop_nbdkit sock
  qemu-img check disk.qed
  # A restart clears it.
  start_nbdkit sock "$QED_PLUGIN" file=disk.qed
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"d" * 512, 0); h.flush()'
}

@test "qed faults: ENOSPC while allocating fails the request only, until space is back" {
  qemu-img create -q -f qed disk.qed 8M
  LD_PRELOAD="$PRELOAD" NBDKIT_PRELOAD="$PRELOAD" \
  FAULT_PATH="$BATS_TEST_TMPDIR/disk.qed" FAULT_CALL=write FAULT_ERRNO=ENOSPC \
  FAULT_SWITCH="$BATS_TEST_TMPDIR/disk-full" FAULT_NTH=1 FAULT_TIMES=0 \
    start_nbdkit sock "$QED_PLUGIN" file=disk.qed
  nbdsh -u "$(nbd_uri sock)" -c '
import errno, os
h.pwrite(b"a" * 65536, 0)
h.flush()
open("disk-full", "w").close()           # every write fails from now on
for off in (1 << 20, 2 << 20, 3 << 20):
    try:
        h.pwrite(b"x" * 4096, off); assert False, "write succeeded"
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, e
assert h.pread(65536, 0) == b"a" * 65536  # reads keep working
h.flush()                                  # nothing is in doubt
os.unlink("disk-full")                     # space is back
h.pwrite(b"y" * 4096, 1 << 20)
h.flush()
assert h.pread(4096, 1 << 20) == b"y" * 4096
'
  stop_nbdkit sock
  # Checkable, at most leaks (exit 3).
  qemu-img check disk.qed || test $? -eq 3
}
