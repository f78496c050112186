#!/usr/bin/env python3
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Random NBD workload for the dirty-bitmap tests, and the independent
# computation of what it touched.
#
#   dirty-bitmap-workload.py run URI SEED NOPS LOG [MAXLEN [OPS]]
#       Random pwrite / zero / trim requests (OPS: letters w z t, with
#       repetition for weight, default wwwzt; unaligned offsets and
#       lengths too); each request is appended to LOG ("op offset
#       length", flushed) BEFORE it is sent, so a log survives a kill.
#   dirty-bitmap-workload.py expect GRANULARITY LOG...
#       Print the sorted granule numbers touched by the logged requests.
#   dirty-bitmap-workload.py changed GRANULARITY BEFORE AFTER
#       Print the granules whose contents differ between two images.
#   dirty-bitmap-workload.py compare QDB NAME GRANULES_FILE [subset]
#       Exit 1 unless bitmap NAME's persisted dirty set equals (or, with
#       "subset", contains) the granules listed in GRANULES_FILE.

import json
import os
import random
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))


def run(uri, seed, nops, log, maxlen=200000, ops="wwwzt"):
    import nbd
    rnd = random.Random(seed)
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    can_trim = h.can_trim()
    can_zero = h.can_zero()
    with open(log, "a") as f:
        for _ in range(nops):
            ln = rnd.randint(1, maxlen)
            off = rnd.randrange(0, size - ln)
            if rnd.random() < 0.5:
                off -= off % 512
            op = rnd.choice(ops)
            if op == "z" and not can_zero:
                op = "w"
            if op == "t" and not can_trim:
                op = "w"
            f.write("%s %d %d\n" % (op, off, ln))
            f.flush()
            if op == "w":
                h.pwrite(rnd.randbytes(ln), off)
            elif op == "z":
                h.zero(ln, off)
            else:
                h.trim(ln, off)
    h.flush()
    h.shutdown()


def expect(gran, logs):
    s = set()
    for log in logs:
        with open(log) as f:
            for line in f:
                _, off, ln = line.split()
                off, ln = int(off), int(ln)
                s.update(range(off // gran, (off + ln - 1) // gran + 1))
    return sorted(s)


def changed(gran, a, b):
    out = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        n = 0
        while True:
            x = fa.read(gran)
            y = fb.read(gran)
            if not x and not y:
                break
            if x != y:
                out.append(n)
            n += 1
    return out


def compare(qdb, name, granules_file, mode):
    sys.path.insert(0, here)
    import importlib
    reader = importlib.import_module("dirty-bitmap-qdbread")
    got = set(reader.read(qdb)[name]["dirty"])
    with open(granules_file) as f:
        want = set(int(x) for x in f.read().split())
    if mode == "subset":
        missing = want - got
        if missing:
            print("bitmap %s misses %d changed granules, e.g. %s" %
                  (name, len(missing), sorted(missing)[:10]))
            return 1
        print("bitmap %s: %d changed granules all dirty (%d dirty)" %
              (name, len(want), len(got)))
        return 0
    if got != want:
        print("bitmap %s: missing %s extra %s" %
              (name, sorted(want - got)[:10], sorted(got - want)[:10]))
        return 1
    print("bitmap %s: %d dirty granules as expected" % (name, len(got)))
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
            *(int(x) for x in sys.argv[6:7]), *sys.argv[7:8])
    elif cmd == "expect":
        print(" ".join(map(str, expect(int(sys.argv[2]), sys.argv[3:]))))
    elif cmd == "changed":
        print(" ".join(map(str, changed(int(sys.argv[2]), sys.argv[3],
                                        sys.argv[4]))))
    elif cmd == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4],
                         sys.argv[5] if len(sys.argv) > 5 else "equal"))
