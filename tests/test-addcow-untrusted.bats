#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Untrusted add-cow sidecars (issue 12): addcow-backing-policy= and
# addcow-backing-dir=, and the bitmap limit.  A sidecar can name any
# file, or an NBD URI that makes the server connect where it says.
# Each is served as today under follow, refused under inside and under
# refuse with one line naming the sidecar, the name and the rule.
#
#   d/disk.raw, d/s.add-cow   the image and the sidecar under test
#   d/in.raw                  an allowed backing file ("INSIDE...")
#   out.raw                   outside d/ ("OUTSIDE...")
#   extra/e.raw               allowed with addcow-backing-dir=

load functions.sh
load untrusted-helpers.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_nbdsh
  cd "$BATS_TEST_TMPDIR"
  untrusted_tree
  truncate -s 1M d/disk.raw
}

# sidecar BACKING [FORMAT]: write d/s.add-cow recording BACKING as it
# is given (no bitmap yet: "fresh"), image disk.raw, 64 KiB clusters.
sidecar ()
{
  python3 - d/s.add-cow "$1" "${2:-raw}" <<'PY'
import struct, sys
path, backing, fmt = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
image = b"disk.raw"
hs = 65536
h = b"ACOW" + struct.pack("<IIII", 76, len(backing), 76 + len(backing),
                          len(image))
h += struct.pack("<IQQI", 16, 0, 0, hs)
h += fmt.ljust(16, b"\0") + b"raw".ljust(16, b"\0") + backing + image
with open(path, "wb") as f:
    f.write(h.ljust(hs, b"\0"))
PY
}

# first_bytes N PARAMS...: the first N bytes served.
first_bytes ()
{
  local n="$1"; shift
  nbdkit -U - --filter="$ADDCOW_FILTER" file d/disk.raw addcow=d/s.add-cow \
    "$@" --run "nbdsh -u \"\$uri\" -c 'import sys; sys.stdout.write(h.pread($n, 0).decode())'"
}

# refused_by RULE NAME PARAMS...: the server refuses the sidecar,
# unchanged, with one line naming it, the backing name and the rule.
refused_by ()
{
  local rule="$1" name="$2"; shift 2
  refused d/s.add-cow "s\.add-cow: backing (file )?$name refused by addcow-backing-policy=$rule" \
    nbdkit -U - --filter="$ADDCOW_FILTER" file d/disk.raw \
    addcow=d/s.add-cow "$@" --run true
  test "$(grep -c "refused by" <<<"$output")" -eq 1
}

@test "addcow untrusted: /etc/passwd, ../ escape, absolute path, symlink" {
  ln -s ../out.raw d/link.raw
  local name
  for name in /etc/passwd ../out.raw "$PWD/out.raw" link.raw; do
    sidecar "$name"
    run first_bytes 5
    [ "$status" -eq 0 ]
    if [ "$name" = /etc/passwd ]; then
      [ "$output" = "$(head -c5 /etc/passwd)" ]
    else
      [ "$output" = OUTSI ]
    fi
    run first_bytes 5 addcow-backing-policy=follow
    [ "$status" -eq 0 ]
    sidecar "$name"
    refused_by inside "$name" addcow-backing-policy=inside
    grep -q "resolves to /" <<<"$output"
    refused_by refuse "$name" addcow-backing-policy=refuse
  done
}

@test "addcow untrusted: an NBD URI in the sidecar" {
  requires nbdkit memory --version
  start_nbdkit r memory 1M
  nbdsh_on r 'h.pwrite(b"REMOTE", 0)'
  local uri
  uri="$(nbd_uri "$PWD/r")"
  sidecar "$uri"
  run first_bytes 6
  [ "$status" -eq 0 ] && [ "$output" = REMOTE ]
  sidecar "$uri"
  refused_by inside "nbd\+unix:.*" addcow-backing-policy=inside
  grep -q "a URI is never inside" <<<"$output"
  refused_by refuse "nbd\+unix:.*" addcow-backing-policy=refuse
}

@test "addcow untrusted: backing files inside, and backing-dir" {
  sidecar in.raw
  run first_bytes 6 addcow-backing-policy=inside
  [ "$status" -eq 0 ] && [ "$output" = INSIDE ]
  sidecar ../extra/e.raw
  refused_by inside ../extra/e.raw addcow-backing-policy=inside
  run first_bytes 5 addcow-backing-policy=inside addcow-backing-dir=extra
  [ "$status" -eq 0 ] && [ "$output" = EXTRA ]
  expect_fail_cleanly "addcow-backing-dir= only has a meaning with" \
    nbdkit -U - --filter="$ADDCOW_FILTER" file d/disk.raw \
    addcow=d/s.add-cow addcow-backing-dir=extra --run true
  expect_fail_cleanly "addcow-backing-policy=no: must be follow, inside or refuse" \
    nbdkit -U - --filter="$ADDCOW_FILTER" file d/disk.raw \
    addcow=d/s.add-cow addcow-backing-policy=no --run true
}

@test "addcow untrusted: a QED backing's own chain is checked" {
  requires qemu-img --version
  qemu-img create -q -f qed -b ../out.raw -F raw d/base.qed 1M
  sidecar base.qed qed
  run first_bytes 7
  [ "$status" -eq 0 ] && [ "$output" = OUTSIDE ]
  expect_fail_cleanly \
    "base.qed: backing file ../out.raw refused by addcow-backing-policy=inside" \
    nbdkit -U - --filter="$ADDCOW_FILTER" file d/disk.raw \
    addcow=d/s.add-cow addcow-backing-policy=inside --run true
}

@test "addcow untrusted: qad-img info flags the backing without opening it" {
  sidecar /etc/passwd
  run "$QAD_IMG" info d/s.add-cow
  [ "$status" -eq 0 ]
  grep -q "backing file: */etc/passwd (raw) \[outside the image's directory\]$" <<<"$output"
  run "$QAD_IMG" info --backing-policy=inside --json d/s.add-cow
  grep -q '"backing-refused-by": "inside"' <<<"$output"
  sidecar in.raw
  run "$QAD_IMG" info --backing-policy=inside d/s.add-cow
  ! grep -q "outside\|refused" <<<"$output"
  expect_fail_cleanly "refused by backing-policy=refuse" \
    "$QAD_IMG" create --format=add-cow d/t.add-cow --image=d/disk.raw \
    --backing=d/in.raw --backing-policy=refuse
  [ ! -e d/t.add-cow ]
}

@test "addcow untrusted: the bitmap a disk needs is bounded" {
  requires nbdkit null --version
  sidecar in.raw
  poke d/s.add-cow 20 I 12       # 4 KiB clusters ...
  poke d/s.add-cow 40 I 4096     # ... and HEADER_SIZE to match
  truncate -s 4096 d/s.add-cow
  # A 16 TiB disk at 4 KiB clusters needs a 512 MiB bitmap.
  expect_fail_cleanly "add-cow bitmap of 536870912 bytes .* exceeds the limit of 268435456 bytes" \
    nbdkit -U - --filter="$ADDCOW_FILTER" null 16T addcow=d/s.add-cow \
    --run 'nbdinfo --size "$uri"'
  [ "$(stat -c %s d/s.add-cow)" -eq 4096 ]
  expect_fail_cleanly "exceeds the limit of 65536 bytes" \
    nbdkit -U - --filter="$ADDCOW_FILTER" null 4G addcow=d/s.add-cow \
    addcow-max-bitmap-size=64K --run 'nbdinfo --size "$uri"'
  nbdkit -U - --filter="$ADDCOW_FILTER" null 4G addcow=d/s.add-cow \
    addcow-max-bitmap-size=128K --run 'nbdinfo --size "$uri"'
}
