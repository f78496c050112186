#!/usr/bin/env python3
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# An independent add-cow reader and writer, written from
# docs/specs/add-cow.txt alone (no code shared with common/addcow),
# to check the spec and the implementation against each other.
#
#   addcow-spec.py read SIDECAR OUT     reconstruct the disk into OUT
#   addcow-spec.py write SIDECAR IMAGE SIZE CLUSTER_BITS [BACKING FMT]
#       write a new sidecar with the names in the opposite order to
#       the reference writer (image name first, at the end of the
#       header area) and a full bitmap of zeroes

import os
import struct
import sys


def fail(msg):
    sys.exit("addcow-spec.py: " + msg)


def read_sidecar(path):
    data = open(path, "rb").read()
    if len(data) < 76:
        fail("truncated")
    (magic, boff, bsize, ioff, isize, cbits, features, compat, hsize) = \
        struct.unpack_from("<4sIIIIIQQI", data, 0)
    if magic != b"ACOW":
        fail("magic")
    if not 12 <= cbits <= 21:
        fail("cluster_bits")
    if hsize != max(4096, 1 << cbits) or len(data) < hsize:
        fail("HEADER_SIZE")
    if features:
        fail("features")

    def name(off, size, required):
        if off == 0 and size == 0 and not required:
            return None
        if off == 0 or size == 0 or off < 76 or off > hsize - 2 or \
                off + size > hsize:
            fail("name offset/size")
        s = data[off:off + size]
        if b"\0" in s:
            fail("NUL in name")
        return s.decode()

    def fmt(b):
        s = b.rstrip(b"\0")
        if b"\0" in s or any(c < 0x21 or c > 0x7e for c in s):
            fail("format field")
        return s.decode()

    backing = name(boff, bsize, False)
    image = name(ioff, isize, True)
    bfmt = fmt(data[44:60])
    ifmt = fmt(data[60:76])
    if (backing is None) != (bfmt == ""):
        fail("backing format")
    if ifmt == "" or image == backing:
        fail("image")
    return dict(cbits=cbits, hsize=hsize, compat=compat, backing=backing,
                bfmt=bfmt, image=image, ifmt=ifmt, bitmap=data[hsize:])


def resolve(sidecar, name):
    if name.startswith("/"):
        return name
    return os.path.join(os.path.dirname(os.path.abspath(sidecar)), name)


def do_read(sidecar, out):
    h = read_sidecar(sidecar)
    image = open(resolve(sidecar, h["image"]), "rb").read()
    size = len(image)
    cs = 1 << h["cbits"]
    n = (size + cs - 1) // cs
    all_alloc = h["compat"] & 1
    backing = b""
    if h["backing"] is not None and not all_alloc:
        if h["bfmt"] != "raw":
            fail("this reader only reads raw backing files")
        backing = open(resolve(sidecar, h["backing"]), "rb").read()
    bm = h["bitmap"]
    if not all_alloc:
        need = ((n + 7) // 8 + cs - 1) // cs * cs
        if len(bm) != 0 and len(bm) < need:
            fail("bitmap truncated")
    disk = bytearray(size)
    for c in range(n):
        lo, hi = c * cs, min(size, (c + 1) * cs)
        bit = all_alloc or (len(bm) > c // 8 and (bm[c // 8] >> (c % 8)) & 1)
        if bit:
            disk[lo:hi] = image[lo:hi]
        else:
            chunk = backing[lo:hi]
            disk[lo:lo + len(chunk)] = chunk      # zeroes past its end
    open(out, "wb").write(disk)
    print("clusters=%d in_image=%d all_allocated=%d" % (
        n, sum(1 for c in range(n) if all_alloc or
               (len(bm) > c // 8 and (bm[c // 8] >> (c % 8)) & 1)),
        bool(all_alloc)))


def do_write(sidecar, image, size, cbits, backing=None, bfmt=None):
    cs = 1 << cbits
    hsize = max(4096, cs)
    hdr = bytearray(hsize)
    iname = image.encode()
    ioff = hsize - 1 - len(iname)         # at the end, one spare byte
    boff = bsize = 0
    if backing:
        bname = backing.encode()
        boff, bsize = 200, len(bname)
        hdr[boff:boff + bsize] = bname
        hdr[44:44 + len(bfmt)] = bfmt.encode()
    hdr[ioff:ioff + len(iname)] = iname
    struct.pack_into("<4sIIIIIQQI", hdr, 0, b"ACOW", boff, bsize, ioff,
                     len(iname), cbits, 0, 0, hsize)
    hdr[60:63] = b"raw"
    n = (size + cs - 1) // cs
    bmlen = ((n + 7) // 8 + cs - 1) // cs * cs
    with open(sidecar, "wb") as f:
        f.write(hdr)
        f.write(bytes(bmlen))


if sys.argv[1] == "read":
    do_read(sys.argv[2], sys.argv[3])
elif sys.argv[1] == "write":
    a = sys.argv[2:]
    do_write(a[0], a[1], int(a[2]), int(a[3]), *(a[4:6] if len(a) > 4 else []))
else:
    fail("usage")
