#!/usr/bin/env python3
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# An independent reader of QDB files, written from docs/specs/qdb.txt
# alone (it shares no code with common/qdb), so that the tests check
# the persisted bitmaps without trusting the filter's own parser.
#
# Usage: dirty-bitmap-qdbread.py FILE.qdb
# Prints JSON: {NAME: {"granularity": G, "disk_size": S, "flags": F,
#                      "dirty": [granule numbers]}, ...}

import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[0:4] == b"QDB\0", "bad magic"
    version, cbits, nb = struct.unpack(">III", data[4:16])
    assert version == 1 and 9 <= cbits <= 21
    cs = 1 << cbits
    dir_off, = struct.unpack(">Q", data[16:24])
    hlen, dir_size = struct.unpack(">II", data[24:32])
    incompat, = struct.unpack(">Q", data[32:40])
    assert incompat == 0
    out = {}
    pos = dir_off
    for _ in range(nb):
        toff, dsize, tsize, gran, flags, nsize = \
            struct.unpack(">QQIIHH", data[pos:pos + 28])
        extra, = struct.unpack(">I", data[pos + 36:pos + 40])
        name = data[pos + 40 + extra:pos + 40 + extra + nsize].decode()
        pos += (40 + extra + nsize + 7) // 8 * 8
        nr = (dsize + gran - 1) // gran
        assert tsize == (nr + cs * 8 - 1) // (cs * 8)
        dirty = []
        for k in range(tsize):
            e, = struct.unpack(">Q", data[toff + 8 * k:toff + 8 * k + 8])
            off = e & 0x00fffffffffffe00
            base = k * cs * 8
            if off == 0:
                if e & 1:
                    dirty.extend(range(base, min(base + cs * 8, nr)))
                continue
            cl = data[off:off + cs]
            for i, byte in enumerate(cl):
                if byte == 0:
                    continue
                for b in range(8):
                    n = base + i * 8 + b
                    if byte >> b & 1 and n < nr:
                        dirty.append(n)
        out[name] = {"granularity": gran, "disk_size": dsize,
                     "flags": flags, "dirty": dirty}
    assert pos == dir_off + dir_size
    return out


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout)
    print()
