#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Differential tests: a seeded random workload (concurrent unaligned
# writes, zeroes with and without MAY_TRIM / FAST_ZERO, FUA, flushes,
# checked reads) through the filter, and the same operations on a
# plain raw copy of the backing file.  The export must equal the
# reference byte for byte, also after a restart, and the raw image
# alone must equal the reference in every cluster whose bit is set.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_file "$ADDCOW_WORKLOAD"
  cd "$BATS_TEST_TMPDIR"
}

# diff_round SEED NOPS ARGS...: one workload, restart, compare, check.
diff_round ()
{
  local seed="$1" nops="$2"; shift 2
  start_addcow s "$@"
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw "$nops" "$seed"
  stop_nbdkit s
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
  start_addcow s
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  stop_nbdkit s
}

@test "addcow differential: raw backing, 64K clusters, 3 rounds with restarts" {
  # 1024 clusters: after 1800 operations many are still at 0.
  random_file base.img $((48 * 1024 * 1024)) 11
  truncate -s 64M disk.raw
  reference_of base.img 64M ref.raw
  diff_round 1 600 addcow-backing=base.img
  diff_round 2 600
  diff_round 3 600
}

@test "addcow differential: 4K clusters, backing larger than the image" {
  random_file base.img $((5 * 1024 * 1024)) 12
  truncate -s $((4 * 1024 * 1024 + 4096 * 3 + 100)) disk.raw
  reference_of base.img $((4 * 1024 * 1024 + 4096 * 3 + 100)) ref.raw
  diff_round 4 800 addcow-backing=base.img addcow-cluster-size=4K
  diff_round 5 400
}

@test "addcow differential: 2M clusters, no backing file, garbage in the image" {
  random_file disk.raw $((8 * 1024 * 1024)) 13
  truncate -s 8M ref.raw
  diff_round 6 400 addcow-cluster-size=2M
}

@test "addcow differential: memory plugin underneath (multi-threaded)" {
  random_file base.img $((4 * 1024 * 1024)) 14
  reference_of base.img 4M ref.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" memory 4M \
    addcow=mem.add-cow addcow-image=memory-disk addcow-backing=base.img
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 800 7
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
}

@test "addcow differential: plugin without multi-conn (per-connection persistence), with restarts" {
  requires_filter multi-conn
  random_file base.img $((6 * 1024 * 1024)) 15
  truncate -s 8M disk.raw
  reference_of base.img 8M ref.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" --filter=multi-conn file disk.raw \
    multi-conn-mode=disable addcow=disk.add-cow addcow-backing=base.img
  [ "$(nbdinfo --can multi-conn "$(nbd_uri s)"; echo $?)" != 0 ]
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 500 8
  stop_nbdkit s
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
  start_nbdkit s --filter="$ADDCOW_FILTER" --filter=multi-conn file disk.raw \
    multi-conn-mode=disable addcow=disk.add-cow addcow-on-read=true
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 500 9
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  stop_nbdkit s
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow differential: qemu-io -f raw on the NBD URI (seeded writes and write-zeroes)" {
  requires qemu-io --version
  random_file base.img $((2 * 1024 * 1024)) 16
  truncate -s 3M disk.raw
  reference_of base.img 3M ref.raw
  start_addcow s addcow-backing=base.img addcow-cluster-size=4K
  # A seeded script: qemu-io commands, and the same on the reference.
  python3 - <<'PY'
import random
r = random.Random(16)
size = 3 << 20
ref = bytearray(open("ref.raw", "rb").read())
cmds = []
for i in range(150):
    length = r.choice([1, 100, 511, 4096, 5000, 70000])
    off = r.randrange(0, size - length)
    if r.random() < 0.7:
        pat = r.randrange(1, 256)
        cmds.append("write -P %d %d %d" % (pat, off, length))
        ref[off:off + length] = bytes([pat]) * length
    else:
        cmds.append("write -z %d %d" % (off, length))
        ref[off:off + length] = bytes(length)
    if i % 25 == 0:
        cmds.append("flush")
open("cmds", "w").write("\n".join(cmds) + "\n")
open("ref.raw", "wb").write(ref)
PY
  args=()
  while read -r c; do args+=(-c "$c"); done < cmds
  qemu-io -f raw "${args[@]}" "$(nbd_uri s)" > qemu-io.out
  ! grep -i error qemu-io.out
  [ "$(grep -c "^wrote" qemu-io.out)" -eq 150 ]
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  stop_nbdkit s
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}
