#!/usr/bin/env python3
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Workloads for the live-control tests of the dirty-bitmap filter
# (dirty-bitmap-control=SOCKET).  Writers are threads, one NBD
# connection each (libnbd releases the GIL while it waits).
#
#   dirty-bitmap-live.py atomic URI CTL QAD_IMG ROUNDS WRITERS LOG
#       Writers write 4K blocks, each block at most once, while the
#       main thread runs "bitmap --add b<i+1> --disable b<i>" ROUNDS
#       times.  LOG gets the offset of every write that completed, as
#       it completes (so a kill of the server leaves a correct log).
#   dirty-bitmap-live.py covered QDB GRANULARITY LOG
#       Every logged write's granule is dirty in at least one bitmap
#       (independent QDB reader); prints how many bitmaps hold each.
#   dirty-bitmap-live.py pit URI VIEW_URI CTL QAD_IMG INITIAL OUT WRITERS
#       Point in time: writers keep writing versioned 4K blocks; the
#       main thread freezes b1 (adding b2), copies the dirty extents of
#       VIEW_URI onto a copy of INITIAL (the disk before the writers
#       started) while the writers go on, releases b1, and checks that
#       OUT is the disk as of the freeze: for every writer, exactly a
#       prefix of its (sequential) writes, cut between the moment the
#       command was sent and the moment it returned.
#   dirty-bitmap-live.py hostile CTL URI
#       Malformed, oversized, half-sent and stalled control clients;
#       the server answers each with an error, keeps serving others and
#       keeps serving data.

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

BLOCK = 4096


def qad(qad_img, ctl, *args):
    r = subprocess.run([qad_img, "bitmap", "--connect=" + ctl] + list(args),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("qad-img bitmap %s failed: %s" % (args, r.stderr))


def start_writers(fn, n):
    ts = [threading.Thread(target=fn, args=(w,), daemon=True)
          for w in range(n)]
    for t in ts:
        t.start()
    return ts


def atomic(uri, ctl, qad_img, rounds, writers, log):
    import nbd
    stop = threading.Event()
    done = []
    errors = []
    probe = nbd.NBD()
    probe.connect_uri(uri)
    nblocks = probe.get_size() // BLOCK
    probe.shutdown()
    # Each completed write is logged at once, so that the log is right
    # even when the server is killed in the middle of the commands.
    logf = open(log, "w")
    loglock = threading.Lock()

    def writer(w):
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            k = 0
            while not stop.is_set() and k * writers + w < nblocks:
                off = (k * writers + w) * BLOCK
                h.pwrite(b"%c" % (65 + w) * BLOCK, off)
                with loglock:
                    done.append(off)
                    logf.write("%d\n" % off)
                    logf.flush()
                k += 1
            h.shutdown()
        except Exception as e:
            errors.append(e)

    ts = start_writers(writer, writers)
    for i in range(1, rounds + 1):
        qad(qad_img, ctl, "--add", "b%d" % (i + 1), "-g", "4K",
            "--disable", "b%d" % i)
    stop.set()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("writer failed: %s" % errors[0])
    print("%d writes during %d commands" % (len(done), rounds))


def covered(qdb, gran, log):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import importlib
    reader = importlib.import_module("dirty-bitmap-qdbread")
    bms = reader.read(qdb)
    sets = [set(b["dirty"]) for b in bms.values()]
    with open(log) as f:
        offs = [int(x) for x in f.read().split()]
    missing = [o for o in offs if not any(o // gran in s for s in sets)]
    both = sum(1 for o in offs if sum(o // gran in s for s in sets) > 1)
    if missing:
        print("%d of %d writes are in no bitmap, e.g. offsets %s" %
              (len(missing), len(offs), missing[:5]))
        return 1
    print("%d writes, all in some bitmap (%d in two), %d bitmaps" %
          (len(offs), both, len(sets)))
    return 0


def block_of(w, seq):
    return struct.pack("<QQ", w + 1, seq) * (BLOCK // 16)


def pit(uri, view_uri, ctl, qad_img, initial, out, writers):
    import nbd
    stop = threading.Event()
    errors = []
    hist = [[] for _ in range(writers)]  # (block, t_start, t_end)
    probe = nbd.NBD()
    probe.connect_uri(uri)
    size = probe.get_size()
    probe.shutdown()
    nblocks = size // BLOCK

    def writer(w):
        try:
            rnd = random.Random(w)
            h = nbd.NBD()
            h.connect_uri(uri)
            mine = list(range(w, nblocks, writers))
            seq = 0
            while not stop.is_set():
                b = rnd.choice(mine)
                seq += 1
                t0 = time.monotonic()
                h.pwrite(block_of(w, seq), b * BLOCK)
                hist[w].append((b, t0, time.monotonic()))
            h.shutdown()
        except Exception as e:
            errors.append(e)

    ts = start_writers(writer, writers)
    time.sleep(0.2)
    c0 = time.monotonic()
    qad(qad_img, ctl, "--add", "b2", "--freeze", "b1")
    c1 = time.monotonic()
    time.sleep(0.3)
    # Copy the dirty extents of the frozen view while writers go on.
    shutil.copyfile(initial, out)
    v = nbd.NBD()
    v.add_meta_context("base:allocation")
    v.connect_uri(view_uri)
    extents = []

    def cb(meta, off, ents, err):
        for i in range(0, len(ents), 2):
            extents.append((off, ents[i], ents[i + 1]))
            off += ents[i]
        return 0

    pos = 0
    while pos < size:
        n = len(extents)
        v.block_status(min(size - pos, 1 << 30), pos, cb)
        pos = sum(e[1] for e in extents[n:]) + extents[n][0]
    copied = 0
    with open(out, "r+b") as f:
        for off, ln, flags in extents:
            if flags & 1:       # hole: clean
                continue
            while ln > 0:
                n = min(ln, 1 << 20)
                f.seek(off)
                f.write(v.pread(n, off))
                copied += n
                off += n
                ln -= n
    v.shutdown()
    time.sleep(0.2)
    stop.set()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("writer failed: %s" % errors[0])
    qad(qad_img, ctl, "--release", "b1", "--remove", "b1")

    # Check: for each writer, OUT holds exactly a prefix of its writes.
    with open(initial, "rb") as f:
        init = f.read()
    with open(out, "rb") as f:
        got = f.read()
    total = sum(len(h) for h in hist)
    after = 0
    for w in range(writers):
        h = hist[w]
        lo = sum(1 for _, _, te in h if te < c0)
        hi = sum(1 for _, ts0, _ in h if ts0 < c1)
        after += len(h) - hi
        state = {}
        for i in range(lo):
            state[h[i][0]] = i + 1
        ok = False
        for k in range(lo, hi + 1):
            if k > lo:
                state[h[k - 1][0]] = k
            good = True
            for b in range(w, nblocks, writers):
                s = state.get(b)
                want = block_of(w, s) if s else init[b * BLOCK:(b + 1) * BLOCK]
                if got[b * BLOCK:(b + 1) * BLOCK] != want:
                    good = False
                    break
            if good:
                ok = True
                break
        if not ok:
            print("writer %d: the copy is no prefix of its writes between "
                  "%d and %d" % (w, lo, hi))
            return 1
    print("point in time: %d writes (%d after the freeze while copying), "
          "%d of %d bytes copied, copy equals the disk at the freeze" %
          (total, after, copied, size))
    if after == 0:
        print("no write happened after the freeze: the test proves nothing")
        return 1
    return 0


def frame(body):
    return struct.pack(">I", len(body)) + body


def ctl_connect(ctl):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    s.settimeout(10)
    return s


def recv_reply(s):
    hdr = b""
    while len(hdr) < 4:
        d = s.recv(4 - len(hdr))
        if not d:
            return None
        hdr += d
    n, = struct.unpack(">I", hdr)
    body = b""
    while len(body) < n:
        d = s.recv(n - len(body))
        if not d:
            return None
        body += d
    return body.decode()


def ask(ctl, raw, half_close=False):
    s = ctl_connect(ctl)
    s.sendall(raw)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    r = recv_reply(s)
    s.close()
    return r


def hostile(ctl, uri):
    import nbd
    fails = 0

    def expect(what, reply, prefix):
        nonlocal fails
        ok = reply is not None and reply.startswith(prefix)
        print("%-40s %s: %r" % (what, "ok" if ok else "FAIL",
                                (reply or "")[:70]))
        fails += not ok

    # A stalled client (half a header) and one stuck mid-body hold
    # their slots while everything below goes on.
    stalled = ctl_connect(ctl)
    stalled.sendall(b"\0\0")
    stalled2 = ctl_connect(ctl)
    stalled2.sendall(frame(b"info\n")[:6])

    t = time.monotonic()
    expect("info while others stall", ask(ctl, frame(b"info\n")), "ok\nbitmap")
    if time.monotonic() - t > 2:
        print("FAIL: a stalled client delayed another")
        fails += 1
    expect("zero length", ask(ctl, b"\0\0\0\0"), "error message length")
    expect("oversized length", ask(ctl, b"\x7f\xff\xff\xff"),
           "error message length")
    expect("no final newline", ask(ctl, frame(b"info")), "error malformed")
    expect("NUL byte", ask(ctl, frame(b"info\0\n")), "error malformed")
    expect("binary garbage", ask(ctl, frame(os.urandom(200) + b"\n")),
           "error")
    expect("unknown operation", ask(ctl, frame(b"format c:\n")),
           "error line 1: unknown")
    expect("missing argument", ask(ctl, frame(b"remove\n")),
           "error line 1: remove takes")
    expect("extra argument", ask(ctl, frame(b"clear a b\n")),
           "error line 1: clear takes")
    expect("bad name", ask(ctl, frame(b"info\nclear a/b\n")),
           "error line 2: invalid bitmap name")
    expect("bad granularity", ask(ctl, frame(b"add x 12abc\n")),
           "error line 1: granularity")
    expect("granularity not a power of 2", ask(ctl, frame(b"add x 1000\n")),
           "error")
    expect("too many operations", ask(ctl, frame(b"info\n" * 65)),
           "error too many")
    expect("no such bitmap", ask(ctl, frame(b"remove nosuch\n")), "error")
    expect("atomic: second op fails, first undone",
           ask(ctl, frame(b"add tmpbm 65536\nremove nosuch\n")), "error")
    expect("... so tmpbm does not exist", ask(ctl, frame(b"remove tmpbm\n")),
           "error")
    expect("half-sent then half-closed",
           ask(ctl, frame(b"info\n")[:6], half_close=True),
           "error truncated")
    # Disconnect right after sending a command: it is applied or not,
    # and the server goes on.
    s = ctl_connect(ctl)
    s.sendall(frame(b"add gone 65536\nremove gone\n"))
    s.close()
    # Too many clients: slots are limited, the extra one is told so.
    many = []
    for _ in range(18):
        many.append(ctl_connect(ctl))
        time.sleep(0.02)
    time.sleep(0.5)
    extra = []
    for c in many:
        c.settimeout(0.2)
        try:
            d = c.recv(100)
            if d:
                extra.append(d)
        except socket.timeout:
            pass
    for c in many:
        c.close()
    ok = any(b"too many control clients" in d for d in extra)
    print("%-40s %s" % ("too many clients", "ok" if ok else "FAIL"))
    fails += not ok
    time.sleep(0.2)
    expect("info after all that", ask(ctl, frame(b"info\n")), "ok\nbitmap")
    stalled.close()
    stalled2.close()
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(b"z" * 512, 0)
    if h.pread(512, 0) != b"z" * 512:
        print("FAIL: data path broken")
        fails += 1
    h.shutdown()
    return 1 if fails else 0


if __name__ == "__main__":
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "atomic":
        atomic(a[0], a[1], a[2], int(a[3]), int(a[4]), a[5])
    elif cmd == "covered":
        sys.exit(covered(a[0], int(a[1]), a[2]))
    elif cmd == "pit":
        sys.exit(pit(a[0], a[1], a[2], a[3], a[4], a[5], int(a[6])))
    elif cmd == "hostile":
        sys.exit(hostile(a[0], a[1]))
    else:
        sys.exit("unknown command " + cmd)
