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
# With a region map (incompatible feature bit 0), marked regions are
# ORed into enabled bitmaps, as the spec's "Region map" says.

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
    assert incompat & ~1 == 0
    # Region map (incompatible bit 0): find extension "RGNM".
    regions = None
    pos = hlen
    while True:
        etype, elen = struct.unpack(">II", data[pos:pos + 8])
        if etype == 0:
            break
        if etype == 0x52474e4d:
            rsize, roff, rlen = struct.unpack(">QQQ", data[pos + 8:pos + 32])
            rmap = data[roff:roff + rlen]
            regions = (rsize, [r for r in range(rlen * 8)
                               if rmap[r // 8] >> (r % 8) & 1])
        pos += 8 + (elen + 7) // 8 * 8
    assert (regions is not None) == bool(incompat & 1)
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
        if regions and flags & 1:
            rsize, marked = regions
            s = set(dirty)
            for r in marked:
                if r * rsize < dsize:
                    end = min(dsize, (r + 1) * rsize)
                    s.update(range(r * rsize // gran, (end - 1) // gran + 1))
            dirty = sorted(s)
        out[name] = {"granularity": gran, "disk_size": dsize,
                     "flags": flags, "dirty": dirty}
    assert pos == dir_off + dir_size
    return out


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout)
    print()
