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

# qdb_refused PATTERN: the filter and qad-img both refuse disk.qdb
# with a message matching PATTERN (and naming the file), leaving it
# unchanged.
qdb_refused ()
{
  refused disk.qdb "disk\.qdb.*$1" \
    nbdkit -U sock -f --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
  refused disk.qdb "disk\.qdb.*$1" "$QAD_IMG" info --format=qdb disk.qdb
  refused disk.qdb "disk\.qdb.*$1" \
    "$QAD_IMG" bitmap --format=qdb disk.qdb --clear b1
  refused disk.qdb "disk\.qdb.*$1" "$QAD_IMG" check --format=qdb disk.qdb
  [ "$status" -eq 2 ]
}

@test "dirty-bitmap corrupt: the valid file is accepted" {
  start_nbdkit sock --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=disk.qdb
}

@test "dirty-bitmap corrupt: bad magic" {
  poke disk.qdb 0 ">I" 0x51584200
  qdb_refused "not QDB"
}

@test "dirty-bitmap corrupt: unsupported version" {
  poke disk.qdb 4 ">I" 7
  qdb_refused "version 7 is not supported"
}

@test "dirty-bitmap corrupt: unknown incompatible feature bit" {
  poke disk.qdb 32 ">Q" 0x100
  qdb_refused "incompatible_features 0x0000000000000100: unknown incompatible feature bit 8"
}

@test "dirty-bitmap corrupt: unknown incompatible bit named by the feature table" {
  poke disk.qdb 32 ">Q" 0x4
  # Feature name table extension at 64: type, length 48, entry.
  poke disk.qdb 64 ">I" 0x6803f857
  poke disk.qdb 68 ">I" 48
  poke disk.qdb 72 ">B" 0
  poke disk.qdb 73 ">B" 2
  python3 -c '
with open("disk.qdb", "r+b") as f:
    f.seek(74); f.write(b"encrypted-bits")'
  qdb_refused "bit 2 \(encrypted-bits\)"
}

@test "dirty-bitmap corrupt: cluster_bits out of range" {
  poke disk.qdb 8 ">I" 30
  qdb_refused "cluster_bits 30 out of range"
  poke disk.qdb 8 ">I" 8
  qdb_refused "cluster_bits 8 out of range"
}

@test "dirty-bitmap corrupt: header_length past cluster 0" {
  poke disk.qdb 24 ">I" 70000
  qdb_refused "header_length 70000"
}

@test "dirty-bitmap corrupt: header extension without end marker" {
  poke disk.qdb 64 ">I" 0x1234
  poke disk.qdb 68 ">I" 65500
  qdb_refused "header extension 0x00001234 .* runs past cluster 0"
}

@test "dirty-bitmap corrupt: directory past end of file" {
  poke disk.qdb 16 ">Q" 0x40000000
  qdb_refused "bitmap directory at offset 1073741824 .* past the end of the file"
}

@test "dirty-bitmap corrupt: unaligned bitmap table offset" {
  poke disk.qdb 65536 ">Q" 131080
  qdb_refused 'bitmap "b1": bitmap_table_offset 131080'
}

@test "dirty-bitmap corrupt: granularity not a power of 2" {
  poke disk.qdb $((65536 + 20)) ">I" 65535
  qdb_refused 'bitmap "b1": granularity 65535 is not a power of 2'
}

@test "dirty-bitmap corrupt: name size 0 and 1024" {
  poke disk.qdb $((65536 + 26)) ">H" 0
  qdb_refused "directory entry 0: name_size 0 out of range"
  poke disk.qdb $((65536 + 26)) ">H" 1024
  qdb_refused "directory entry 0: name_size 1024 out of range"
}

@test "dirty-bitmap corrupt: overlapping bitmap tables" {
  poke disk.qdb $((65536 + 48)) ">Q" 131072
  qdb_refused "table at offset 131072 overlaps .*table at offset 131072"
}

@test "dirty-bitmap corrupt: data cluster overlapping the directory" {
  poke disk.qdb 131072 ">Q" 65536
  qdb_refused "overlaps"
}

@test "dirty-bitmap corrupt: reserved flag bits" {
  poke disk.qdb $((65536 + 24)) ">H" 0x0101
  qdb_refused 'bitmap "b1": flags 0x0101 has reserved bits set'
}

@test "dirty-bitmap corrupt: truncated file" {
  truncate -s 150000 disk.qdb
  qdb_refused "past the end of the file"
  truncate -s 20 disk.qdb
  qdb_refused "file size 20 is too small"
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
