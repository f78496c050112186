#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Hostile declared sizes in a QDB file (issue 12): a few kilobytes of
# tables may declare gigabytes of bits.  The file is refused, naming
# the bitmap, the sizes and the limit, before anything is allocated
# (limit: dirty-bitmap-max-size=, qad-img --max-qdb-size=).

load functions.sh

setup ()
{
  requires_file "$DIRTY_BITMAP_FILTER"
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
  truncate -s 8M disk.raw
}

# hostile FILE N: N bitmaps, 2 MiB clusters, each with a 512-entry
# table (4 KiB in the file) declaring 512 x 2 MiB = 1 GiB of bits.
hostile ()
{
  python3 - "$@" <<'PY'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
cs = 1 << 21
entry = 48                                  # 40 + 1-byte name, padded
hdr = b"QDB\0" + struct.pack(">IIIQII", 1, 21, n, cs, 64, n * entry)
hdr += bytes(64 - len(hdr))
d = b""
for i in range(n):
    e = struct.pack(">QQIIHH", (2 + i) * cs, 512 * cs * 8 * 512, 512, 512,
                    1, 1)
    e += bytes(40 - len(e)) + bytes([ord("a") + i])
    d += e + bytes(entry - len(e))
with open(path, "wb") as f:
    f.write(hdr)
    f.seek(cs)
    f.write(d)
    f.truncate((2 + n) * cs)
PY
}

@test "dirty-bitmap untrusted: declared bits past the limit are refused" {
  hostile h.qdb 3
  expect_fail_cleanly \
    'h\.qdb: bitmap "a" \(bitmap_table_size 512, cluster_size 2097152\) brings the memory the file needs past the limit of 1073741824 bytes' \
    nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=h.qdb --run true
  expect_fail_cleanly 'past the limit of 1073741824' "$QAD_IMG" info h.qdb
  # One bitmap of 1 GiB passes the per-bitmap check but, with its table,
  # not the whole-file limit either.
  hostile one.qdb 1
  expect_fail_cleanly 'bitmap "a" .* past the limit' "$QAD_IMG" info one.qdb
}

@test "dirty-bitmap untrusted: the limit is a parameter" {
  "$QAD_IMG" create --format=qdb ok.qdb --size=8M --bitmap=b1 --bitmap=b2
  "$QAD_IMG" info ok.qdb >/dev/null
  expect_fail_cleanly 'bitmap "b1" .* past the limit of 65536 bytes' \
    "$QAD_IMG" info --max-qdb-size=64K ok.qdb
  expect_fail_cleanly 'past the limit of 65536 bytes' \
    nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=ok.qdb dirty-bitmap-max-size=64K --run true
  nbdkit -U - --filter="$DIRTY_BITMAP_FILTER" file disk.raw \
    dirty-bitmap=ok.qdb dirty-bitmap-max-size=1M --run true
}
