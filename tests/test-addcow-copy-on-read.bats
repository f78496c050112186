#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Copy-on-read: reading populates the image from the backing file;
# after reading everything ALL_ALLOCATED is set and the disk reads
# identically with the backing file gone.

load functions.sh
load addcow-helpers.sh

setup ()
{
  requires_addcow
  requires_file "$ADDCOW_WORKLOAD"
  cd "$BATS_TEST_TMPDIR"
  random_file base.img $((3 * 1024 * 1024 + 5000)) 51
  truncate -s 4M disk.raw
  reference_of base.img 4M ref.raw
}

@test "addcow on-read: a full read sets ALL_ALLOCATED, then the backing is not needed" {
  start_addcow s addcow-backing=base.img addcow-on-read=true
  nbdsh_on s 'h.pwrite(b"w" * 3000, 1000000)'
  python3 -c 'f = open("ref.raw", "r+b"); f.seek(1000000); f.write(b"w" * 3000)'
  # nbdcopy reads in parallel over several connections (--no-extents:
  # read every byte, holes included).
  nbdcopy --no-extents "$(nbd_uri s)" out.raw
  cmp out.raw ref.raw
  stop_nbdkit s
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  # The raw image alone is now the disk.
  cmp disk.raw ref.raw
  mv base.img gone.img
  start_addcow s -v
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  grep -q 'ALL_ALLOCATED: serving the image alone' s.log
}

@test "addcow on-read: a partial read copies exactly the clusters it touched" {
  start_addcow s addcow-backing=base.img addcow-on-read=true
  nbdsh_on s 'b = h.pread(10, 65536 * 2 + 65530)   # clusters 2 and 3
assert b == open("base.img", "rb").read()[65536 * 2 + 65530:65536 * 2 + 65540]'
  # Bits 2 and 3 are set (persisted at disconnect).
  stop_nbdkit s
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 0c ]
  cmp <(dd if=disk.raw bs=64K skip=2 count=2 status=none) \
      <(dd if=base.img bs=64K skip=2 count=2 status=none)
}

@test "addcow on-read: concurrent reads and unaligned writes do not lose writes" {
  start_addcow s addcow-backing=base.img addcow-on-read=true
  # Writes race with copy-on-read of the same clusters: random
  # workload with checked reads, plus a parallel reader.
  nbdcopy "$(nbd_uri s)" /dev/null &
  local reader=$!
  "$ADDCOW_WORKLOAD" run "$(nbd_uri s)" ref.raw 600 52
  wait "$reader"
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  stop_nbdkit s
  "$ADDCOW_WORKLOAD" check-image disk.add-cow disk.raw ref.raw
}

@test "addcow on-read: a read-only client still populates the image" {
  start_addcow s -r addcow-backing=base.img addcow-on-read=true
  nbdcopy --no-extents "$(nbd_uri s)" out.raw
  cmp out.raw ref.raw
  stop_nbdkit s
  [ "$(peek disk.add-cow 32 Q)" = 1 ]
  cmp disk.raw ref.raw
}

@test "addcow on-read: a remote backing is fetched once" {
  # The backing over NBD through the log filter: every read it serves
  # is logged; reading the disk twice fetches each cluster once.
  start_nbdkit b -r --filter=log file base.img logfile="$PWD/backing.log"
  start_addcow s addcow-backing="$(nbd_uri "$PWD/b")" addcow-on-read=true
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  "$ADDCOW_WORKLOAD" compare "$(nbd_uri s)" ref.raw
  stop_nbdkit s
  # Sum of the counts of the Read requests the backing served: its
  # size (3M + 5000), rounded up to whole clusters at the end.
  total=$(python3 -c 'import re, sys
print(sum(int(m, 0) for m in re.findall(r" Read .*?count=(0x[0-9a-f]+)",
                                        open(sys.argv[1]).read())))' backing.log)
  echo "backing bytes read: $total"
  [ "$total" -le $((4 * 1024 * 1024)) ]
  [ "$total" -ge $((3 * 1024 * 1024 + 5000)) ]
}

@test "addcow on-read: NBD_CMD_CACHE prefetches clusters into the image" {
  requires_nbdsh
  start_addcow s addcow-backing=base.img addcow-on-read=true
  nbdsh_on s '
assert h.can_cache()
h.cache(2 * 65536, 4 * 65536)
'
  stop_nbdkit s
  [ "$(od -A n -t x1 -j 65536 -N 1 disk.add-cow | tr -d ' ')" = 30 ]
  cmp <(dd if=disk.raw bs=64K skip=4 count=2 status=none) \
      <(dd if=base.img bs=64K skip=4 count=2 status=none)
  # Without copy-on-read there is nothing to cache into.
  start_addcow s
  nbdsh_on s 'assert not h.can_cache()'
}
