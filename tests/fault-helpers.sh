# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the test-*-faults.bats files.  Load after
# functions.sh.

# Python for nbdsh -c, appended to a snippet that has a handle h on a
# poisoned server: every write-side request (flush, write, zero, trim,
# FUA write) must fail with EIO.
ALL_REFUSED_PY='
import errno
for f in (lambda: h.flush(), lambda: h.pwrite(b"c" * 512, 0),
          lambda: h.zero(4096, 8192), lambda: h.trim(65536, 0),
          lambda: h.pwrite(b"c" * 512, 0, nbd.CMD_FLAG_FUA)):
    try:
        f(); assert False, "accepted after a failed sync"
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
'

# The LD_PRELOAD value for a server with tests/fault-inject.so: after
# the sanitizer runtimes, which tests/functions.sh preloads as
# NBDKIT_PRELOAD (pass both LD_PRELOAD and NBDKIT_PRELOAD).
PRELOAD="${NBDKIT_PRELOAD:+$NBDKIT_PRELOAD:}$TESTS_BIN/.libs/fault-inject.so"
