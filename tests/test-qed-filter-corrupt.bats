#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Corrupt and truncated images through the qed filter (over the file
# plugin): refused with one clear line naming the field and value, or
# the bad request fails with EIO; never a crash, never garbage.  Then
# a sample of the fuzz corpus (the fuzz/ seeds, mutated as the replay
# driver does) replayed through the filter.  FILTER_FUZZ_CASES sets
# the sample size (default 30).

load functions.sh
load qed-helpers.sh
load qed-filter-helpers.sh

setup ()
{
  requires nbdcopy --version
  requires nbdinfo --version
  requires_file "$QAD_IMG"
  requires_qed_filter
  cd "$BATS_TEST_TMPDIR"
  "$abs_top_srcdir/fuzz/make-qed-seeds.sh" seeds "$QAD_IMG"
}

# read_through IMAGE: read all of IMAGE and its map through the filter.
read_through ()
{
  nbdkit -U - --filter="$QED_FILTER" file "$1" --run '
    nbdcopy "$uri" out.raw && nbdinfo --map "$uri" >/dev/null'
}

@test "qed filter corrupt: bad magic" {
  cp seeds/data.qed bad.qed
  poke bad.qed 0 I 0x12345678
  expect_fail_cleanly 'not a QED image \(bad magic\)' read_through bad.qed
}

@test "qed filter corrupt: truncated header" {
  head -c 40 seeds/data.qed > short.qed
  expect_fail_cleanly 'truncated QED header: file is 40 bytes' \
    read_through short.qed
}

@test "qed filter corrupt: cluster size not a power of 2" {
  cp seeds/data.qed bad.qed
  poke bad.qed 4 I 12345
  expect_fail_cleanly 'cluster_size.*12345' read_through bad.qed
}

@test "qed filter corrupt: unknown feature bit" {
  cp seeds/data.qed bad.qed
  poke bad.qed 16 Q 0x40
  expect_fail_cleanly 'feature' read_through bad.qed
}

@test "qed filter corrupt: L1 table past the end of the file" {
  cp seeds/data.qed bad.qed
  poke bad.qed 40 Q $((1 << 40))
  expect_fail_cleanly 'l1_table_offset' read_through bad.qed
}

@test "qed filter corrupt: L2 entry outside the file fails the read with EIO" {
  cp seeds/data.qed bad.qed
  poke bad.qed $((8192 + 8)) Q $((1 << 30))
  expect_fail_cleanly 'corrupt QED image: L2 entry 1 .* = 1073741824' \
    read_through bad.qed
  # The clusters before it still read correctly.
  nbdkit -U - --filter="$QED_FILTER" file bad.qed --run '
    nbdsh -u "$uri" -c "assert h.pread(4096, 0) == b\"\\xaa\" * 4096"'
}

@test "qed filter corrupt: data cluster cut off by truncation" {
  cp seeds/data.qed cut.qed
  truncate -s $((16384 + 100)) cut.qed
  expect_fail_cleanly 'corrupt QED image: L2 entry 2 .* = 16384' \
    read_through cut.qed
}

@test "qed filter corrupt: fuzz corpus sample replayed through the filter" {
  local n="${FILTER_FUZZ_CASES:-30}"
  mkdir mutants
  python3 - seeds mutants "$n" <<'PY'
import os, random, struct, sys
seeds, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = random.Random(11)
interesting = [0, 1, 2, 3, 511, 512, 4095, 4096, 65535, 65536, 65537,
               2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, 2**64 - 512,
               2**40, 2**26, 2**27, 8192, 12288, 16384]
names = sorted(os.listdir(seeds))
for i in range(n):
    d = bytearray(open(os.path.join(seeds, names[i % len(names)]), "rb").read())
    for _ in range(r.randint(1, 4)):
        # Bias towards the header and the tables (L1 at 4096, L2 at 8192).
        if len(d) == 0: break
        at = r.choice([r.randrange(64), 4096 + 8 * r.randrange(4),
                       8192 + 8 * r.randrange(4), r.randrange(len(d))])
        at = min(at, len(d) - 1)
        k = r.randrange(5)
        if k == 0: d[at] ^= 1 << r.randrange(8)
        elif k == 1: d[at] = r.choice([0, 0xff])
        elif k == 2:
            w = r.choice([4, 8]); at &= ~(w - 1)
            v = r.choice(interesting) & (2 ** (8 * w) - 1)
            d[at:at + w] = v.to_bytes(w, "little")
        elif k == 3 and r.randrange(4) == 0: d = d[:r.randrange(len(d))]
        else: d[at] = r.randrange(256)
    open(os.path.join(out, "m%03d.qed" % i), "wb").write(d)
PY
  local f status ok=0 refused=0
  for f in mutants/*.qed; do
    run read_through "$f"
    if test "$status" -ge 128 ||
       grep -Eq 'Assertion|Segmentation|AddressSanitizer|core dumped' <<<"$output"; then
      echo "$f: crashed (status $status)" >&2
      echo "$output" >&2
      return 1
    fi
    if test "$status" -eq 0; then
      ok=$((ok + 1))
    else
      # Every refusal says why, on a line from the filter or nbdkit.
      grep -Eq 'QED|corrupt|backing|invalid|truncated|error' <<<"$output" || {
        echo "$f: failed without a clear message:" >&2
        echo "$output" >&2
        return 1
      }
      refused=$((refused + 1))
    fi
  done
  echo "# $ok mutants read, $refused refused or failed cleanly" >&3
  test $((ok + refused)) -eq "$n"
}

@test "qed filter corrupt: tables above qed-max-table-size are refused before allocation, allowed when raised" {
  # 4 MiB clusters x 16 = 64 MiB tables: legitimate, above the default.
  "$QAD_IMG" create wide.qed 1G --cluster-size=4M --table-size=16
  expect_fail_cleanly "exceed the limit of 33554432" \
    nbdkit -U - --filter="$QED_FILTER" file wide.qed \
      --run 'nbdinfo --size "$uri"'
  nbdkit -U - --filter="$QED_FILTER" file wide.qed qed-max-table-size=64M \
    --run 'nbdinfo --size "$uri"' | grep -qx 1073741824
}
