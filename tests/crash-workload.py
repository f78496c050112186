# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

"""Crash-test workload and verifier, shared by the crash tests.

  crash-workload.py run URI SIZE SEED LOG
      Rounds of random writes and zero writes, each round ended by a
      flush; after a flush returns, the round number is appended to LOG
      and fsynced.  Runs until the server dies.

  crash-workload.py verify IMAGE.raw INITIAL.raw SIZE SEED LOG
      IMAGE must hold everything of the rounds up to the last one in LOG
      (they were flushed).  Bytes the next round touched may hold the
      old or the new value; every other byte must be exact.
"""

import os
import random
import sys

SECTOR = 512


def round_ops(seed, rnd, size):
    r = random.Random(seed * 100003 + rnd)
    ops = []
    for i in range(r.randint(4, 24)):
        n = r.choice([SECTOR, 4096, 65536, r.randint(1, 200000)])
        n = min(n, size)
        off = r.randrange(0, size - n + 1)
        if r.random() < 0.2:
            ops.append(("zero", off, n, 0))
        else:
            ops.append(("write", off, n, (rnd * 7 + i) % 255 + 1))
    return ops


def run(uri, size, seed, log):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rnd = 1
    try:
        while True:
            for kind, off, n, byte in round_ops(seed, rnd, size):
                if kind == "zero":
                    h.zero(n, off)
                else:
                    h.pwrite(bytes([byte]) * n, off)
            h.flush()
            os.write(fd, b"%d\n" % rnd)
            os.fsync(fd)
            rnd += 1
    except nbd.Error:
        pass                    # the server was killed


def verify(image, initial, size, seed, log):
    with open(log) as f:
        done = [int(x) for x in f.read().split()]
    last = max(done) if done else 0
    state = bytearray(open(initial, "rb").read().ljust(size, b"\0")[:size])
    for rnd in range(1, last + 1):
        for kind, off, n, byte in round_ops(seed, rnd, size):
            state[off:off + n] = bytes([byte]) * n
    # The round in flight: either value is allowed where it wrote.
    inflight = round_ops(seed, last + 1, size)
    got = open(image, "rb").read()
    if len(got) != size:
        sys.exit("verify: image is %d bytes, expected %d" % (len(got), size))
    bad = 0
    step = 65536
    for a in range(0, size, step):
        if got[a:a + step] == state[a:a + step]:
            continue
        for o in range(a, min(a + step, size)):
            if got[o] == state[o]:
                continue
            if any(off <= o < off + n and got[o] == byte
                   for kind, off, n, byte in inflight):
                continue
            if bad < 5:
                print("verify: byte %d is %d, flushed value %d" %
                      (o, got[o], state[o]), file=sys.stderr)
            bad += 1
    if bad:
        sys.exit("verify: %d bytes lost after %d flushed rounds" % (bad, last))
    print("verified %d flushed rounds" % last)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        verify(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
               sys.argv[6])
