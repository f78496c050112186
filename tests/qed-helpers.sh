# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the test-qed-*.bats files.  Load after functions.sh.

# qemu_io_script SEED SIZE CLUSTER [OPS] [TRIM_AS]: print qemu-io
# commands for a random workload of writes (pattern and random data),
# zero writes, partial and unaligned writes and writes across cluster
# boundaries, with flushes.  With TRIM_AS=discard some ops are
# "discard"; with TRIM_AS=zero the same ops are emitted as the zero
# writes that our plugin's trim is equivalent to (whole clusters).
qemu_io_script ()
{
  python3 - "$@" <<'PY'
import random, sys
seed, size, cs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ops = int(sys.argv[4]) if len(sys.argv) > 4 else 40
trim_as = sys.argv[5] if len(sys.argv) > 5 else ""
r = random.Random(seed)
def span():
    kind = r.random()
    if kind < 0.3:     # whole clusters
        n = r.randint(1, 4)
        off = r.randrange(0, max(1, size // cs - n + 1)) * cs
        return off, min(n * cs, size - off)
    if kind < 0.6:     # inside one cluster, unaligned
        off = r.randrange(0, size - 1)
        return off, r.randint(1, min(cs - off % cs, size - off))
    off = r.randrange(0, size - 1)     # anywhere, crossing clusters
    return off, r.randint(1, min(3 * cs, size - off))
for i in range(ops):
    off, n = span()
    k = r.random()
    if k < 0.55:
        print("write -P 0x%02x %d %d" % (r.randint(1, 255), off, n))
    elif k < 0.8:
        print("write -z%s %d %d" % (" -u" if r.random() < 0.5 else "", off, n))
    elif k < 0.9 and trim_as:
        # trim: only whole clusters are discarded by our plugin
        a = -(-off // cs) * cs
        b = (off + n) // cs * cs
        if off + n == size: b = size
        if a < b:
            print(("discard %d %d" if trim_as == "discard" else "write -z %d %d") % (a, b - a))
    else:
        print("flush")
PY
}

# run_qemu_io FMT TARGET SCRIPTFILE: run a qemu-io script on TARGET.
run_qemu_io ()
{
  local fmt="$1" target="$2" script="$3" args=() line
  while IFS= read -r line; do args+=(-c "$line"); done < "$script"
  qemu-io -f "$fmt" "${args[@]}" "$target" >/dev/null
}

# serve_qed SOCK IMAGE [ARGS...]: start our plugin on IMAGE.
serve_qed ()
{
  local sock="$1" image="$2"; shift 2
  start_nbdkit "$sock" "$QED_PLUGIN" file="$image" "$@"
}

# qemu_opens FILE: true if QEMU itself can open FILE as QED.
qemu_opens ()
{
  qemu-io -f qed -r -c 'read 0 512' "$1" >/dev/null 2>&1
}

# qed_server_setup: the setup of tests that serve a QED image made by
# QEMU: sets SOCK (the server's socket) and URI.
qed_server_setup ()
{
  requires qemu-img --version
  requires qemu-io --version
  requires_file "$QED_PLUGIN"
  cd "$BATS_TEST_TMPDIR"
  SOCK="$BATS_TEST_TMPDIR/sock"
  URI="$(nbd_uri "$SOCK")"
}
