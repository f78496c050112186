#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# The add-cow filter checks the raw image's size against the sidecar
# at startup (in .after_fork, before any client connects): an image
# that grew past what the bitmap covers, or shrank below a cluster the
# bitmap says is written, is refused in one line with both sizes.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((1024 * 1024)) 7
  truncate -s 1M disk.raw
  start_addcow s addcow-backing=base.img addcow-cluster-size=4K
  # Cluster 255 (the last one) is written to the image.
  nbdsh_on s 'h.pwrite(b"x" * 4096, 255 * 4096)'
  stop_nbdkit s
}

# refused_at_startup PATTERN: nbdkit in the foreground with no client
# exits non-zero by itself, with exactly one error line matching
# PATTERN; the sidecar is unchanged.
refused_at_startup ()
{
  refused disk.add-cow "$1" timeout 20 nbdkit -f -U "$BATS_TEST_TMPDIR/sock" \
    --filter="$ADDCOW_FILTER" file disk.raw addcow=disk.add-cow
  echo "$output"
  test "$status" -lt 124
  test "$(grep -c . <<<"$output")" -eq 1
}

@test "addcow size: an image grown past the bitmap is refused at startup" {
  # 4096 bitmap bytes of 4K clusters cover 128M.
  truncate -s 129M disk.raw
  refused_at_startup 'disk.add-cow: the image is 135266304 bytes, but the add-cow bitmap \(4096 bytes at offset 4096\) covers at most 134217728 bytes: the image grew'
}

@test "addcow size: an image shrunk below a written cluster is refused at startup" {
  truncate -s 512K disk.raw
  refused_at_startup 'disk.add-cow: the image is 524288 bytes \(128 clusters\), but the add-cow bitmap marks cluster 255 \(at byte 1044480\) as written: the image shrank'
}

@test "addcow size: growth within the bitmap's capacity is served, new space from the backing rule" {
  truncate -s 2M disk.raw
  start_addcow s
  test "$(nbdinfo --size "$(nbd_uri s)")" -eq $((2 * 1024 * 1024))
  # Past the backing file's end the disk reads zeroes.
  nbdsh_on s 'assert h.pread(4096, 1536 * 1024) == bytes(4096)'
  nbdsh_on s 'assert h.pread(4096, 255 * 4096) == b"x" * 4096'
}
