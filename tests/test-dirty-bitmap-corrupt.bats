#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# dirty-bitmap filter and qad-img on corrupt QDB files: each is refused
# with a message naming the file, the field and the value; nothing
# crashes and the file is not modified.

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  cd "$BATS_TEST_TMPDIR"
  truncate -s 8M disk.raw
  # Layout (cluster 64K): header 0, directory 65536 (entries of 48
  # bytes: b1 at 65536, b2 at 65584), b1 table 131072, b2 table 196608.
  "$QAD_IMG" create --format=qdb disk.qdb --size=8M --bitmap=b1 --bitmap=b2
}

# patch OFFSET FORMAT VALUE: write VALUE (Python struct FORMAT, big
# endian) at OFFSET.
patch ()
{
  python3 -c '
import struct, sys
off, fmt, val = int(sys.argv[1]), sys.argv[2], int(sys.argv[3], 0)
with open("disk.qdb", "r+b") as f:
    f.seek(off); f.write(struct.pack(">" + fmt, val))' "$@"
}

# refused PATTERN: the filter and qad-img both refuse disk.qdb with a
# message matching PATTERN (and naming the file), leaving it unchanged.
refused ()
{
  local sum
  sum="$(md5sum < disk.qdb)"
  expect_fail_cleanly "disk\.qdb.*$1" \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  expect_fail_cleanly "disk\.qdb.*$1" "$QAD_IMG" info --format=qdb disk.qdb
  expect_fail_cleanly "disk\.qdb.*$1" "$QAD_IMG" bitmap --format=qdb disk.qdb --clear b1
  run "$QAD_IMG" check --format=qdb disk.qdb
  [ "$status" -eq 2 ]
  [ "$(md5sum < disk.qdb)" = "$sum" ]
}

@test "dirty-bitmap corrupt: the valid file is accepted" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
}

@test "dirty-bitmap corrupt: bad magic" {
  patch 0 I 0x51584200
  refused "not QDB"
}

@test "dirty-bitmap corrupt: unsupported version" {
  patch 4 I 7
  refused "version 7 is not supported"
}

@test "dirty-bitmap corrupt: unknown incompatible feature bit" {
  patch 32 Q 0x100
  refused "incompatible_features 0x0000000000000100: unknown incompatible feature bit 8"
}

@test "dirty-bitmap corrupt: unknown incompatible bit named by the feature table" {
  patch 32 Q 0x4
  # Feature name table extension at 64: type, length 48, entry.
  patch 64 I 0x6803f857
  patch 68 I 48
  patch 72 B 0
  patch 73 B 2
  python3 -c '
with open("disk.qdb", "r+b") as f:
    f.seek(74); f.write(b"encrypted-bits")'
  refused "bit 2 \(encrypted-bits\)"
}

@test "dirty-bitmap corrupt: cluster_bits out of range" {
  patch 8 I 30
  refused "cluster_bits 30 out of range"
  patch 8 I 8
  refused "cluster_bits 8 out of range"
}

@test "dirty-bitmap corrupt: header_length past cluster 0" {
  patch 24 I 70000
  refused "header_length 70000"
}

@test "dirty-bitmap corrupt: header extension without end marker" {
  patch 64 I 0x1234
  patch 68 I 65500
  refused "header extension 0x00001234 .* runs past cluster 0"
}

@test "dirty-bitmap corrupt: directory past end of file" {
  patch 16 Q 0x40000000
  refused "bitmap directory at offset 1073741824 .* past the end of the file"
}

@test "dirty-bitmap corrupt: unaligned bitmap table offset" {
  patch 65536 Q 131080
  refused 'bitmap "b1": bitmap_table_offset 131080'
}

@test "dirty-bitmap corrupt: granularity not a power of 2" {
  patch $((65536 + 20)) I 65535
  refused 'bitmap "b1": granularity 65535 is not a power of 2'
}

@test "dirty-bitmap corrupt: name size 0 and 1024" {
  patch $((65536 + 26)) H 0
  refused "directory entry 0: name_size 0 out of range"
  patch $((65536 + 26)) H 1024
  refused "directory entry 0: name_size 1024 out of range"
}

@test "dirty-bitmap corrupt: overlapping bitmap tables" {
  patch $((65536 + 48)) Q 131072
  refused "table at offset 131072 overlaps .*table at offset 131072"
}

@test "dirty-bitmap corrupt: data cluster overlapping the directory" {
  patch 131072 Q 65536
  refused "overlaps"
}

@test "dirty-bitmap corrupt: reserved flag bits" {
  patch $((65536 + 24)) H 0x0101
  refused 'bitmap "b1": flags 0x0101 has reserved bits set'
}

@test "dirty-bitmap corrupt: truncated file" {
  truncate -s 150000 disk.qdb
  refused "past the end of the file"
  truncate -s 20 disk.qdb
  refused "file size 20 is too small"
}

@test "dirty-bitmap corrupt: fuzzed headers never crash the filter" {
  for seed in $(seq 1 30); do
    "$QAD_IMG" create --force --format=qdb disk.qdb --size=8M --bitmap=b1 --bitmap=b2
    python3 -c '
import random, sys
r = random.Random(int(sys.argv[1]))
with open("disk.qdb", "r+b") as f:
    for _ in range(r.randint(1, 4)):
        off = r.choice([r.randrange(0, 64), 65536 + r.randrange(0, 96),
                        131072 + r.randrange(0, 8)])
        f.seek(off); f.write(bytes([r.randrange(256)]))' "$seed"
    run timeout 20 nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" \
      file disk.raw dirty-bitmap=disk.qdb --run 'nbdinfo --size "$uri"'
    # Accepted or refused, never killed by a signal or hung.
    [ "$status" -lt 124 ]
  done
}
