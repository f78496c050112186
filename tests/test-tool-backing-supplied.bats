#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img on an add-cow sidecar with BACKING_SUPPLIED (made by the
# add-cow filter with addcow-local-image=, over the qed filter over the
# file plugin): the recorded backing name is only a label, here the
# path of the QED image the file plugin serves.  No verb may open it
# as a backing file: info says the plugin supplies it, map reports the
# bit-0 ranges as the backing's without reading it (as for a missing
# backing file), check passes, and commit, compare, a safe rebase and
# a grow refuse in one line naming the file and the bit, leaving every
# file as it was.  rebase -u changes the label only.

load functions.sh
load qed-filter-helpers.sh
load tool-crash-helpers.sh

setup ()
{
  tool_test_setup
  requires_nbdsh
  requires_file "$ADDCOW_FILTER"
  requires_qed_filter
  qemu-img create -q -f qed -o cluster_size=65536 disk.qed 4M
  qemu-io -f qed -c "write -P 0x61 0 1M" disk.qed >/dev/null
  # One cluster written through the stack: it lands in local.raw.
  nbdkit -U - --filter="$ADDCOW_FILTER" --filter="$QED_FILTER" \
    file "$PWD/disk.qed" addcow="$PWD/local.add-cow" \
    addcow-local-image="$PWD/local.raw" \
    --run 'nbdsh -u "$uri" -c "h.pwrite(b\"W\" * 65536, 2 << 20); h.flush()"'
  label="$PWD/disk.qed"
  sums="$(md5sum disk.qed local.add-cow local.raw)"
}

# Every file is as the server left it.
unchanged ()
{
  test "$(md5sum disk.qed local.add-cow local.raw)" = "$sums"
}

# opens_label VERB...: does qad-img VERB open (or even stat) the label?
opens_label ()
{
  strace -f -e trace=open,openat,stat,newfstatat,access,faccessat,faccessat2 \
    -o trace.out "$QAD_IMG" "$@" >/dev/null 2>&1 || true
  grep -F "\"$label\"" trace.out
}

@test "backing supplied: the filter makes the sidecar over a QED file, with its path as label" {
  python3 - "$label" <<'PY'
import struct, sys
h = open("local.add-cow", "rb").read(4096)
boff, bsize = struct.unpack_from("<II", h, 4)
assert struct.unpack_from("<Q", h, 24)[0] == 1, "BACKING_SUPPLIED"
assert h[boff:boff + bsize].decode() == sys.argv[1]
assert h[44:60].rstrip(b"\0") == b"raw"
PY
}

@test "backing supplied: info says the server's plugin supplies the backing" {
  run "$QAD_IMG" info local.add-cow
  test "$status" -eq 0
  grep -qF "backing file:       $label (raw) [supplied by the server's plugin: a label, never opened]" <<<"$output"
  "$QAD_IMG" info --output=json local.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == sys.argv[1], d
assert d["backing-filename-format"] == "raw", d
assert d["backing-supplied"] is True, d
assert d["features"] == 1, d
for k in ("backing-exists", "backing-full-path", "backing-outside"):
    assert k not in d, (k, d)' "$label"
  ! opens_label info local.add-cow
  ! opens_label info --json local.add-cow
  unchanged
}

@test "backing supplied: map reports bit-0 ranges as the backing's, unread" {
  "$QAD_IMG" map --output=json local.add-cow | python3 -c '
import json, sys
m = json.load(sys.stdin)
pos = 0
for e in m:
    assert e["start"] == pos, e
    pos += e["length"]
    if e["start"] == 2 << 20:
        assert e == {"start": 2 << 20, "length": 65536, "depth": 0,
                     "present": True, "zero": False, "data": True,
                     "offset": 2 << 20, "source": "image"}, e
    else:
        # As for a missing backing file: data, no offset.
        assert e["depth"] == 1 and e["present"] and e["data"], e
        assert not e["zero"] and "offset" not in e, e
        assert e["source"] == "backing", e
assert pos == 4 << 20
assert len(m) == 3, m'
  run "$QAD_IMG" map local.add-cow
  test "$status" -eq 0
  test "${#lines[@]}" -eq 2
  grep -q "^0x200000        0x10000         0x200000        ./local.raw$" <<<"$output"
  ! grep -qF "$label" <<<"$output"
  ! opens_label map local.add-cow
  ! opens_label map --output=json local.add-cow
  unchanged
}

@test "backing supplied: check passes without the backing" {
  run "$QAD_IMG" check local.add-cow
  test "$status" -eq 0
  grep -q "^No errors were found on the add-cow file.$" <<<"$output"
  ! opens_label check local.add-cow
  unchanged
}

@test "backing supplied: commit refuses, naming the file and the bit" {
  expect_fail_cleanly "^qad-img: local.add-cow: add-cow header: features has BACKING_SUPPLIED \(0x1\): the backing \"$label\" is supplied by the server's plugin and is only a label here; commit cannot write into a backing it cannot open$" \
    "$QAD_IMG" commit local.add-cow
  ! opens_label commit local.add-cow
  unchanged
  qemu-img check -q disk.qed
}

@test "backing supplied: compare, a safe rebase and a grow refuse; a shrink works" {
  qemu-img convert -O raw disk.qed want.raw
  expect_fail_cleanly "^qad-img: local.add-cow: add-cow header: features has BACKING_SUPPLIED.*compare reads local files only" \
    "$QAD_IMG" compare local.add-cow want.raw
  ! opens_label compare local.add-cow want.raw
  qemu-img create -q -f raw other.raw 4M
  expect_fail_cleanly "^qad-img: local.add-cow: add-cow header: features has BACKING_SUPPLIED.*a safe rebase cannot read it" \
    "$QAD_IMG" rebase -b other.raw local.add-cow
  expect_fail_cleanly "^qad-img: local.add-cow: add-cow header: features has BACKING_SUPPLIED.*resize cannot grow the disk" \
    "$QAD_IMG" resize local.add-cow +1M
  ! opens_label resize local.add-cow +1M
  unchanged
  "$QAD_IMG" resize --shrink local.add-cow 3M
  test "$(stat -c %s local.raw)" -eq $((3 << 20))
  "$QAD_IMG" check local.add-cow
}

@test "backing supplied: rebase -u changes the label only, and keeps the bit" {
  expect_fail_cleanly "^qad-img: local.add-cow: add-cow header: features has BACKING_SUPPLIED: .*raw, not qed" \
    "$QAD_IMG" rebase -u -b new-label -F qed local.add-cow
  unchanged
  "$QAD_IMG" rebase -u -b "https://example.com/disk.qed" local.add-cow
  "$QAD_IMG" info --output=json local.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == "https://example.com/disk.qed", d
assert d["backing-supplied"] is True and d["features"] == 1, d'
  # amend likewise: a new label, and the image name alone keeps it.
  "$QAD_IMG" amend -o backing_file=label2 local.add-cow
  cp local.raw other.raw
  "$QAD_IMG" amend -o image_file=other.raw local.add-cow
  "$QAD_IMG" info --output=json local.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == "label2" and d["image-filename"] == "other.raw", d
assert d["backing-supplied"] is True and d["features"] == 1, d'
  expect_fail_cleanly "BACKING_SUPPLIED: .*raw, not qed" \
    "$QAD_IMG" amend -o backing_fmt=qed local.add-cow
  # No backing at all: nothing is supplied any more.
  "$QAD_IMG" rebase -u -b "" local.add-cow
  "$QAD_IMG" info --output=json local.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] is None and d["features"] == 0, d'
  "$QAD_IMG" check local.add-cow
}
