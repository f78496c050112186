#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter, I/O errors: failures of the QDB file and of the
# plugin below: every call site in turn with tests/fault-inject.so (on
# the QDB file, and on the disk written by nbdkit's file plugin), a
# failed fdatasync below that the next flush would not report, and
# FUA requests failing below with nbdkit's error filter (whose 1.32
# version cannot fail a flush).  The rules are in the man page
# ("I/O ERRORS").

load functions.sh
load fault-helpers.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$TESTS_BIN/.libs/fault-inject.so"
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
  SHIM="$TESTS_BIN/.libs/fault-inject.so"
}

@test "dirty-bitmap faults: every call site on the QDB file and the disk below fails in turn" {
  run env SHIM="$SHIM" DIRTY_BITMAP_FILTER="$DIRTY_BITMAP_FILTER" \
    QAD_IMG="$QAD_IMG" QDBREAD="$BATS_TEST_DIRNAME/dirty-bitmap-qdbread.py" \
    "$NBD_PYTHON" "$BATS_TEST_DIRNAME/fault-driver.py" dirty-bitmap \
    "$BATS_TEST_TMPDIR"
  echo "$output"
  test "$status" -eq 0
  echo "# ${lines[-1]}" >&3
  grep -q "QDB write .*poisoned" <<<"$output"
  grep -q "QDB sync .*poisoned" <<<"$output"
  grep -q "disk sync .*flush failed (EIO), poisoned" <<<"$output"
  grep -q "disk write .*write failed (EIO), not poisoned" <<<"$output"
}

# below_sync_fails CODE: start the filter over the file plugin with the
# disk's next fdatasync failing once (when fail-now exists), run CODE
# (python, must fail with EIO), then check that nothing write-side is
# accepted afterwards, though the plugin would succeed again.
below_sync_fails ()
{
  truncate -s 4M disk.raw
  LD_PRELOAD="$PRELOAD" NBDKIT_PRELOAD="$PRELOAD" \
  FAULT_PATH="$BATS_TEST_TMPDIR/disk.raw" FAULT_CALL=sync \
  FAULT_SWITCH="$BATS_TEST_TMPDIR/fail-now" FAULT_NTH=1 \
    start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
      dirty-bitmap=disk.qdb
  nbdsh -u "$(nbd_uri sock)" -c '
import errno, os
h.pwrite(b"a" * 4096, 0)
h.flush()
h.pwrite(b"b" * 4096, 0)
open("fail-now", "w").close()   # the file plugin'"'"'s next fdatasync fails
try:
    '"$1"'
    assert False, "succeeded"
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
os.unlink("fail-now")           # the plugin would succeed now
assert h.pread(4096, 0) == b"b" * 4096   # reads still work
'"$ALL_REFUSED_PY"
  grep "refusing every further write" sock.log
  test "$(grep -c "refusing every further write" sock.log)" -eq 1
  stop_nbdkit sock
  "$QAD_IMG" check disk.qdb
  # A restart clears it.
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  nbdsh -u "$(nbd_uri sock)" -c 'h.pwrite(b"d" * 512, 0); h.flush()'
}

@test "dirty-bitmap faults: a failed flush below poisons the filter" {
  below_sync_fails 'h.flush()'
}

@test "dirty-bitmap faults: a FUA write whose sync fails below poisons the filter" {
  below_sync_fails 'h.pwrite(b"e" * 512, 4096, nbd.CMD_FLAG_FUA)'
}

@test "dirty-bitmap faults: FUA EIO below poisons, ENOSPC and plain EIO do not" {
  truncate -s 4M disk.raw
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" --filter=error \
    file disk.raw dirty-bitmap=disk.qdb \
    error-pwrite-rate=100% error-pwrite=ENOSPC \
    error-pwrite-file="$BATS_TEST_TMPDIR/full" \
    error-zero-rate=100% error-zero=EIO \
    error-zero-file="$BATS_TEST_TMPDIR/broken"
  nbdsh -u "$(nbd_uri sock)" -c '
import errno, os
def fails(f, err):
    try:
        f(); assert False, "succeeded"
    except nbd.Error as e:
        assert e.errnum == err, e
open("full", "w").close()
fails(lambda: h.pwrite(b"x" * 512, 0, nbd.CMD_FLAG_FUA), errno.ENOSPC)
os.unlink("full")
h.pwrite(b"y" * 512, 0, nbd.CMD_FLAG_FUA)   # ENOSPC was not poison
h.flush()
open("broken", "w").close()
fails(lambda: h.zero(512, 4096), errno.EIO)  # no FUA: not poison
os.unlink("broken")
h.zero(512, 4096)
h.flush()
open("broken", "w").close()
fails(lambda: h.zero(512, 4096, nbd.CMD_FLAG_FUA), errno.EIO)
os.unlink("broken")
fails(lambda: h.flush(), errno.EIO)          # poisoned
fails(lambda: h.pwrite(b"z" * 512, 0), errno.EIO)
assert h.pread(512, 0) == b"y" * 512
'
  test "$(grep -c "refusing every further write" sock.log)" -eq 1
}
