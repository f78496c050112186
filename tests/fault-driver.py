#!/usr/bin/env python3
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# I/O-error injection driver for test-qed-faults.bats and
# test-dirty-bitmap-faults.bats.  For one object it:
#  1. runs a fixed workload once with tests/fault-inject.so counting
#     and logging every write, sync, truncate and fallocate call the
#     server makes on the object's file, and finds the first call of
#     every distinct call site (the caller's stack, FAULT_DEPTH frames
#     deep, default 2);
#  2. for each such call and each errno (EIO, ENOSPC) runs the workload
#     again on a fresh copy with that one call failing, and checks the
#     rules of the man pages ("I/O errors"):
#     - the request during which the call failed gets an error, never
#       success;
#     - a failed sync (and for the QDB file any failure) poisons: every
#       later write, zero, trim and flush fails with EIO, reads work,
#       and the server logs one "refusing every further write" line;
#     - any other failure (QED: pwrite, fallocate, ftruncate, also
#       ENOSPC) fails only its request: later requests succeed;
#     - after the server exits the file checks with at most leaks; a
#       restarted server reads every acknowledged write back (bytes of
#       failed requests may hold old or new data) and accepts writes;
#     - dirty-bitmap: every granule that changed is dirty in the QDB.
#     For dirty-bitmap the call sites are those of the QDB file, then
#     those of the disk written by nbdkit's file plugin below (EIO).
#
# add-cow: the filter over the file plugin with a raw backing file;
# failures of the sidecar and of the image the file plugin writes below
# it.  A failed sync poisons; writes acknowledged but never covered by a
# successful flush may then read their old bytes after a restart (their
# bits are never persisted: their data may be lost); the sidecar checks
# clean.
#
# addcow-local: the same with addcow-local-image= (the image is a local
# file the filter writes itself, the file plugin below serves the
# backing read-only).
#
# Usage: fault-driver.py qed|dirty-bitmap|addcow|addcow-local WORKDIR
# Environment: SHIM (fault-inject.so), QED_PLUGIN, DIRTY_BITMAP_FILTER,
# ADDCOW_FILTER, QAD_IMG, QDBREAD (dirty-bitmap-qdbread.py).  Prints a summary line;
# exits 1 on the first broken rule.

import errno
import importlib.util
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import nbd

K, M = 1024, 1024 * 1024
SIZE = 8 * M
FUA = nbd.CMD_FLAG_FUA

# (op, offset, length, flags, byte) with byte the written pattern.
WORKLOAD = [
    ("write", 0, 4096, 0, 0x11),        # new L2 table and cluster
    ("write", 70000, 1000, 0, 0x22),    # partial cluster
    ("flush",),
    ("write", 0, 4096, 0, 0x33),        # in place
    ("write", 4 * M + 100, 5000, FUA, 0x44),  # new table, two partials
    ("zero", 128 * K, 8192, 0),         # whole unallocated clusters
    ("zero", 0, 4096, 0),               # allocated: zeroed in place
    ("trim", 69632, 4096, 0),           # allocated: punched
    ("zero", 5 * M + 10, 100, 0),       # partial
    ("write", 6 * M, 8192, FUA, 0x55),
    ("flush",),
    ("write", 512, 512, 0, 0x66),
    ("flush",),
    ("read", 0, SIZE),
]
WRITE_OPS = ("write", "zero", "trim", "flush")


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Server:
    def __init__(self, work, args, env=None):
        self.sock = os.path.join(work, "sock")
        self.log = os.path.join(work, "server.log")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        e = dict(os.environ)
        e.update(env or {})
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(
                ["nbdkit", "-U", self.sock, "-f"] + args,
                stdout=logf, stderr=subprocess.STDOUT, env=e)
        self.started = False
        for _ in range(400):
            if self.proc.poll() is not None:
                return
            if os.path.exists(self.sock):
                try:
                    h = self.connect()
                    h.shutdown()
                    self.started = True
                    return
                except nbd.Error:
                    pass
            time.sleep(0.025)
        fail("server did not start: %s" % args)

    def connect(self, export=""):
        h = nbd.NBD()
        h.set_export_name(export)
        h.connect_unix(self.sock)
        return h

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        with open(self.log) as f:
            return rc, f.read()


class Model:
    """Expected contents: bytes of failed requests may be old or new."""

    advisory_trim = False               # trimmed bytes: old or zero

    def __init__(self, data):
        self.data = bytearray(data)
        self.alt = {}                   # offset -> other allowed bytes
        self.unflushed = []             # (offset, old bytes) since flush

    def apply(self, off, new, ok):
        if ok:
            self.unflushed.append((off, bytes(self.data[off:off + len(new)])))
            self.data[off:off + len(new)] = new
            for i in [i for i in self.alt if off <= i < off + len(new)]:
                del self.alt[i]
            return
        for i, b in enumerate(new):
            if self.data[off + i] != b:
                self.alt.setdefault(off + i, set()).add(b)

    def flushed(self):
        self.unflushed = []

    def forget_unflushed(self):
        """Acknowledged writes no flush covered may read old bytes."""
        for off, old in self.unflushed:
            for i, b in enumerate(old):
                if self.data[off + i] != b:
                    self.alt.setdefault(off + i, set()).add(b)
        self.unflushed = []

    def check(self, got, what):
        if bytes(got) == bytes(self.data):
            return
        for i in range(len(got)):
            if got[i] != self.data[i] and got[i] not in self.alt.get(i, ()):
                fail("%s: byte %d is 0x%02x, expected 0x%02x" %
                     (what, i, got[i], self.data[i]))


def new_bytes(op, size):
    kind, off, n = op[0], op[1], op[2]
    if kind == "write":
        return bytes([op[4]]) * n
    return bytes(n)                     # zero; trim of whole clusters


def run_workload(srv, model):
    """Run WORKLOAD; returns [(op, None or errno)]."""
    h = srv.connect()
    results = []
    for op in WORKLOAD:
        err = None
        try:
            if op[0] == "write":
                h.pwrite(new_bytes(op, SIZE), op[1], op[3])
            elif op[0] == "zero":
                h.zero(op[2], op[1], op[3])
            elif op[0] == "trim":
                h.trim(op[2], op[1], op[3])
            elif op[0] == "flush":
                h.flush()
            elif op[0] == "read":
                model.check(h.pread(op[2], op[1]), "read during workload")
        except nbd.Error as e:
            err = e.errnum
        if op[0] in ("write", "zero", "trim"):
            model.apply(op[1], new_bytes(op, SIZE), err is None and
                        not (op[0] == "trim" and model.advisory_trim))
            if err is None and op[0] != "trim" and op[3] & FUA:
                model.flushed()
        elif op[0] == "flush" and err is None:
            model.flushed()
        results.append((op, err))
    h.shutdown()
    return results


def parse_log(path):
    """[(kind, n, site, injected)] from a fault-inject log."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            w = line.split()
            inj = w[0] == "INJECT"
            if inj:
                w = w[1:]
            site = "<".join(w[2].split("<")[:DEPTH])
            out.append((w[0], int(w[1]), site, inj))
    return out


def sites_of(calls):
    first = {}
    for kind, n, site, _ in calls:
        first.setdefault((kind, site), n)
    return sorted(first.items(), key=lambda kv: kv[1])


def count_sites(args, env, initial):
    """Run the workload once without failures, counting the calls;
    returns the first call of every call site."""
    if os.path.exists(env["FAULT_LOG"]):
        os.unlink(env["FAULT_LOG"])
    srv = Server(WORK, args, env)
    res = run_workload(srv, Model(initial))
    if any(e for _, e in res):
        fail("workload fails without injection: %s" % res)
    srv.stop()
    return sites_of(parse_log(env["FAULT_LOG"]))


def check_rules(name, kind, want, results, log, poisons):
    failed = [i for i, (_, e) in enumerate(results) if e is not None]
    if not failed:
        return "no request failed"      # injected outside a request
    first = failed[0]
    op, err = results[first]
    poison = poisons(kind, op)
    if err != want:
        fail("%s: %s failed with errno %d, expected %d" %
             (name, op[0], err, want))
    for op2, err2 in results[first + 1:]:
        if op2[0] == "read":
            if err2 is not None:
                fail("%s: read after the failure got errno %d" % (name, err2))
        elif poison and err2 != errno.EIO:
            fail("%s: %s after a failed %s got %s, not EIO" %
                 (name, op2[0], kind, err2))
        elif not poison and err2 is not None:
            fail("%s: %s after a failed %s (not poison) got errno %d" %
                 (name, op2[0], kind, err2))
    lines = [l for l in log.splitlines()
             if "refusing every further write" in l]
    if poison and len(lines) != 1:
        fail("%s: expected one poison line in the log, got %d:\n%s" %
             (name, len(lines), log))
    if not poison and lines:
        fail("%s: %s failure poisoned:\n%s" % (name, kind, log))
    return "%s failed (%s), %s" % (op[0], errno.errorcode[err],
                                   "poisoned" if poison else "not poisoned")


def inject_run(name, args, env, model, kind, want, poisons):
    """One run with a call failing; returns what happened.  A failure
    while the server starts (QED's repair, the QDB file's creation)
    must stop it with a message; the next start must work (checked by
    the caller's verify_after).
    """
    srv = Server(WORK, args, env)
    read_only = False
    if srv.started:
        # QED repairs at the first writable connection: if that fails,
        # the image is served read-only (with a message).
        h = srv.connect()
        read_only = h.is_read_only()
        h.shutdown()
    res = run_workload(srv, model) if srv.started and not read_only \
        else None
    rc, log = srv.stop()
    inj = [c for c in parse_log(env["FAULT_LOG"]) if c[3]]
    if not inj or inj[0][0] != kind:
        fail("%s: not injected as planned: %s" % (name, inj))
    if read_only:
        if "serving reads only" not in log:
            fail("%s: served read-only without saying so:\n%s" % (name, log))
        return "repair failed: served read-only"
    if res is None:
        if rc <= 0 or "error" not in log:
            fail("%s: startup failure not clean (rc %d):\n%s" %
                 (name, rc, log))
        return "start failed (exit %d)" % rc
    what = check_rules(name, kind, want, res, log, poisons)
    if what == "no request failed" and "error" not in log:
        fail("%s: the failure was not reported:\n%s" % (name, log))
    return "the server ran: " + what


def qemu_img_check(path, name):
    r = subprocess.run(["qemu-img", "check", "-f", "qed", path],
                       capture_output=True, text=True)
    if r.returncode not in (0, 3):      # 3: leaks only
        fail("%s: qemu-img check exit %d:\n%s%s" %
             (name, r.returncode, r.stdout, r.stderr))


def verify_after(srv_args, model, name, env=None):
    """Restart without injection: contents, then a write and flush."""
    srv = Server(WORK, srv_args, env)
    if not srv.started:
        rc, log = srv.stop()
        fail("%s: restart failed:\n%s" % (name, log))
    h = srv.connect()
    model.check(h.pread(SIZE, 0), name + ": after restart")
    h.pwrite(b"\x77" * 4096, 7 * M)
    h.flush()
    model.apply(7 * M, b"\x77" * 4096, True)
    h.shutdown()
    srv.stop()


def make_repair_image(plugin, pristine):
    """An image whose open runs the repair: clusters written, then one
    L2 entry cleared (a leak in the middle, moved down by the repair)
    and a junk cluster appended (truncated), NEED_CHECK set.
    """
    srv = Server(WORK, [plugin, "file=" + pristine])
    h = srv.connect()
    h.pwrite(b"\x11" * 4096, 0)
    h.pwrite(b"\x22" * 4096, 8192)
    h.pwrite(b"\x33" * 4096, 4 * M)
    h.shutdown()
    srv.stop()
    with open(pristine, "r+b") as f:
        hdr = f.read(64)
        features, = struct.unpack_from("<Q", hdr, 16)
        l1, = struct.unpack_from("<Q", hdr, 40)
        f.seek(l1)
        l2, = struct.unpack("<Q", f.read(8))
        f.seek(l2)
        f.write(bytes(8))               # guest cluster 0: leaked
        f.seek(16)
        f.write(struct.pack("<Q", features | 2))
        f.seek(0, 2)
        f.write(b"\xee" * 4096)         # junk past the last cluster


def qed_main():
    plugin = os.environ["QED_PLUGIN"]
    base = os.path.join(WORK, "base.raw")
    r = random.Random(14)
    base_data = r.randbytes(SIZE // 2)
    with open(base, "wb") as f:
        f.write(base_data)
    done = set()
    total = 0
    for variant in ("plain", "backing", "repair"):
        pristine = os.path.join(WORK, "pristine.qed")
        img = os.path.join(WORK, "disk.qed")
        cmd = ["qemu-img", "create", "-q", "-f", "qed", "-o",
               "cluster_size=4096,table_size=2"]
        if variant == "backing":
            cmd += ["-b", base, "-F", "raw"]
        subprocess.run(cmd + [pristine, str(SIZE)], check=True)
        args = [plugin, "file=" + img]
        initial = bytes(SIZE)
        if variant == "backing":
            initial = base_data + bytes(SIZE - len(base_data))
        elif variant == "repair":
            make_repair_image(plugin, pristine)
            # What a clean repair gives is the reference.
            shutil.copy(pristine, img)
            srv = Server(WORK, args)
            initial = srv.connect().pread(SIZE, 0)
            srv.stop()
        env = {"LD_PRELOAD": SHIM, "FAULT_PATH": img,
               "FAULT_LOG": os.path.join(WORK, "calls.log")}

        # 1. Count.
        shutil.copy(pristine, img)
        sites = [s for s in count_sites(args, env, initial)
                 if s[0] not in done]

        # 2. Inject at each new site, EIO then ENOSPC.
        for (kind, site), n in sites:
            done.add((kind, site))
            for e in ("EIO", "ENOSPC"):
                name = "qed %s %s #%d %s" % (variant, kind, n, e)
                shutil.copy(pristine, img)
                os.unlink(env["FAULT_LOG"])
                model = Model(initial)
                # A failed sync fails its request with EIO.
                want = errno.EIO if kind == "sync" else getattr(errno, e)
                what = inject_run(name, args, dict(env, FAULT_NTH=str(n),
                                                   FAULT_ERRNO=e),
                                  model, kind, want,
                                  lambda k, op: k == "sync")
                qemu_img_check(img, name)
                verify_after(args, model, name)
                qemu_img_check(img, name + " after restart")
                total += 1
                print("# %s at %s: %s" % (name, site, what))
    kinds = sorted(set(k for k, _ in done))
    print("qed: %d distinct call sites (stack depth %d; kinds %s) injected "
          "with EIO and with ENOSPC: %d runs" %
          (len(done), DEPTH, ", ".join(kinds), total))


def dirty_bitmap_main():
    filt = os.environ["DIRTY_BITMAP_FILTER"]
    qad_img = os.environ["QAD_IMG"]
    qdbread = os.environ["QDBREAD"]
    disk = os.path.join(WORK, "disk.raw")
    qdb = os.path.join(WORK, "disk.qdb")
    r = random.Random(15)
    initial = r.randbytes(SIZE)
    args = ["--filter=" + filt, "file", disk, "dirty-bitmap=" + qdb,
            "dirty-bitmap-granularity=64K"]
    env = {"LD_PRELOAD": SHIM, "FAULT_PATH": qdb,
           "FAULT_LOG": os.path.join(WORK, "calls.log")}

    with open(disk, "wb") as f:
        f.write(initial)
        os.fdatasync(f.fileno())

    def fresh():
        # Restore only what a run writes: rewriting (and so flushing)
        # the whole disk each run would cost more than the run.
        with open(disk, "r+b") as f:
            for op in WORKLOAD + [("write", 7 * M, 4096)]:
                if op[0] in ("write", "zero", "trim"):
                    f.seek(op[1])
                    f.write(initial[op[1]:op[1] + op[2]])
        if os.path.exists(qdb):
            os.unlink(qdb)
        if os.path.exists(env["FAULT_LOG"]):
            os.unlink(env["FAULT_LOG"])

    spec = importlib.util.spec_from_file_location("qdbread", qdbread)
    qdbread_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qdbread_mod)

    def superset(name):
        bm = qdbread_mod.read(qdb)["bitmap0"]
        g = bm["granularity"]
        dirty = set(bm["dirty"])
        with open(disk, "rb") as f:
            now = f.read()
        for i in range(SIZE // g):
            if now[i * g:(i + 1) * g] != initial[i * g:(i + 1) * g] \
               and i not in dirty:
                fail("%s: granule %d changed but is not dirty" % (name, i))

    def fua(op):
        return op[0] in ("write", "zero", "trim") and op[3] & FUA

    # Pass 1, the QDB file: every failure poisons; the request that saw
    # it gets its errno.  Pass 2, the disk below (nbdkit's file
    # plugin): a failed sync poisons, and so does any failed FUA
    # request (the filter cannot tell the plugin's write from its
    # sync); a plain failed write does not.  EIO only in pass 2: a FUA
    # request failing with ENOSPC is taken as a failed allocation (see
    # the man page, LIMITATIONS).
    passes = [("QDB", qdb, ("EIO", "ENOSPC"), lambda k, op: True),
              ("disk", disk, ("EIO",),
               lambda k, op: k == "sync" or fua(op))]
    summary = []
    for what_file, path, errnos, poisons in passes:
        env["FAULT_PATH"] = path
        fresh()
        srv = Server(WORK, args, env)
        res = run_workload(srv, Model(initial))
        if any(e for _, e in res):
            fail("workload fails without injection: %s" % res)
        srv.stop()
        sites = sites_of(parse_log(env["FAULT_LOG"]))
        runs = 0
        for (kind, site), n in sites:
            for e in errnos:
                name = "dirty-bitmap %s %s #%d %s" % (what_file, kind, n, e)
                fresh()
                model = Model(initial)
                what = inject_run(name, args, dict(env, FAULT_NTH=str(n),
                                                   FAULT_ERRNO=e),
                                  model, kind, getattr(errno, e), poisons)
                if what.startswith("the server"):
                    subprocess.run([qad_img, "check", qdb], check=True,
                                   stdout=subprocess.DEVNULL)
                    superset(name)
                verify_after(args, model, name)
                superset(name + " after restart")
                runs += 1
                print("# %s at %s: %s" % (name, site, what))
        summary.append("%d %s call sites (%d runs)" %
                       (len(sites), what_file, runs))
    print("dirty-bitmap: injected at %s, stack depth %d" %
          (" and ".join(summary), DEPTH))


def addcow_main(local=False):
    filt = os.environ["ADDCOW_FILTER"]
    qad_img = os.environ["QAD_IMG"]
    disk = os.path.join(WORK, "disk.raw")
    sidecar = os.path.join(WORK, "disk.add-cow")
    base = os.path.join(WORK, "base.raw")
    r = random.Random(16)
    base_data = r.randbytes(SIZE // 2)
    stale = r.randbytes(SIZE)           # the image's bytes before use
    initial = base_data + bytes(SIZE - len(base_data))
    with open(base, "wb") as f:
        f.write(base_data)
    # The file plugin treats a punch that fails with ENOSPC as advisory.
    Model.advisory_trim = True
    args = ["--filter=" + filt, "file", disk, "addcow=" + sidecar,
            "addcow-backing=" + base, "addcow-cluster-size=4K"]
    if local:
        args = ["--filter=" + filt, "file", base, "addcow=" + sidecar,
                "addcow-local-image=" + disk, "addcow-cluster-size=4K"]

    def fresh():
        with open(disk, "wb") as f:
            f.write(stale)
        if os.path.exists(sidecar):
            os.unlink(sidecar)

    total = 0
    for target in (sidecar, disk):
        what_file = "sidecar" if target == sidecar else "image"
        env = {"LD_PRELOAD": SHIM, "FAULT_PATH": target,
               "FAULT_LOG": os.path.join(WORK, "calls.log")}
        fresh()
        sites = count_sites(args, env, initial)
        for (kind, site), n in sites:
            for e in ("EIO", "ENOSPC"):
                name = "%s %s %s #%d %s" % (sys.argv[1], what_file, kind,
                                            n, e)
                fresh()
                os.unlink(env["FAULT_LOG"])
                model = Model(initial)
                srv = Server(WORK, args, dict(env, FAULT_NTH=str(n),
                                              FAULT_ERRNO=e))
                if not srv.started:
                    rc, log = srv.stop()
                    if rc <= 0 or "error" not in log:
                        fail("%s: startup failure not clean (rc %d):\n%s"
                             % (name, rc, log))
                    what = "server refused to start (exit %d)" % rc
                    if os.path.exists(sidecar):
                        os.unlink(sidecar)  # never made: start afresh
                else:
                    res = run_workload(srv, model)
                    rc, log = srv.stop()
                    # A failed sync fails its request with EIO (the file
                    # plugin reports the errno of fdatasync: either).
                    want = (errno.EIO, getattr(errno, e)) \
                        if kind == "sync" else (getattr(errno, e),)
                    failed = [x for _, x in res if x is not None]
                    what = check_rules(name, kind,
                                       failed[0] if failed and
                                       failed[0] in want else want[0],
                                       res, log,
                                       lambda kind, op: kind == "sync")
                    # The plugin below may swallow an error (the file
                    # plugin's trim ignores a failed punch): its call.
                    if what == "no request failed" and "error" not in log \
                       and target == sidecar:
                        fail("%s: the failure was not reported:\n%s" %
                             (name, log))
                    if "poisoned" in what and "not poisoned" not in what:
                        model.forget_unflushed()
                    rc2 = subprocess.run([qad_img, "check", sidecar],
                                         capture_output=True, text=True)
                    if rc2.returncode != 0:
                        fail("%s: qad-img check:\n%s%s" %
                             (name, rc2.stdout, rc2.stderr))
                calls = parse_log(env["FAULT_LOG"])
                inj = [c for c in calls if c[3]]
                if not inj or inj[0][0] != kind:
                    fail("%s: not injected as planned: %s" % (name, inj))
                verify_after(args, model, name)
                total += 1
                print("# %s at %s: %s" % (name, site, what))
    print("%s: call sites of the sidecar and the image (stack depth "
          "%d) injected with EIO and with ENOSPC: %d runs"
          % (sys.argv[1], DEPTH, total))


if __name__ == "__main__":
    WORK = os.path.abspath(sys.argv[2])
    SHIM = os.environ["SHIM"]
    # Sanitizer builds preload their runtimes first (tests/functions.sh).
    if os.environ.get("NBDKIT_PRELOAD"):
        SHIM = os.environ["NBDKIT_PRELOAD"] + ":" + SHIM
    # Call sites are told apart by this many frames of the caller's
    # stack: 2 (the default) is the call and its caller; more frames
    # inject along more paths (FAULT_DEPTH=4 in the long mode).
    DEPTH = int(os.environ.get("FAULT_DEPTH", "2"))
    {"qed": qed_main, "dirty-bitmap": dirty_bitmap_main,
     "addcow": addcow_main,
     "addcow-local": lambda: addcow_main(local=True)}[sys.argv[1]]()
