#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# qad-img with qemu-img's habits: create never replaces an existing
# file without --force; sizes with fractions and rounding; -V,
# VERB --help, -q, --output=json, -U, check -r; every error starts
# with "qad-img".

load functions.sh

setup ()
{
  requires_file "$QAD_IMG"
  requires qemu-img --version
  cd "$BATS_TEST_TMPDIR"
}

@test "tool habits: create never replaces an existing file of any format without --force" {
  "$QAD_IMG" create -f qed a.qed 1M
  "$QAD_IMG" create -f qdb a.qdb 1M
  truncate -s 1M disk.raw other.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw >/dev/null
  echo "precious" > notes.txt
  for f in a.qed a.qdb a.add-cow notes.txt; do
    for fmt in qed qdb; do
      refused $f "^qad-img: $f: already exists \(.*\); not replacing it without --force$" \
        "$QAD_IMG" create -f $fmt $f 2M
    done
    refused $f "^qad-img: $f: already exists" \
      "$QAD_IMG" create -f add-cow $f --image=other.raw
  done
  grep -q "already exists (a QED image" <<<"$(! "$QAD_IMG" create a.qed 1M 2>&1)"
  grep -q "already exists (a QDB file" <<<"$(! "$QAD_IMG" create a.qdb 1M 2>&1)"
  grep -q "already exists (an add-cow file" <<<"$(! "$QAD_IMG" create a.qed.x 1M 2>&1; ! "$QAD_IMG" create a.add-cow 1M 2>&1)"
  # --force replaces each.
  "$QAD_IMG" create --force -f qed a.qed 2M
  qemu-img info a.qed | grep -q "virtual size: 2 MiB"
  "$QAD_IMG" create --force -f qdb a.qdb 2M
  "$QAD_IMG" create --force -f add-cow a.add-cow --image=other.raw >/dev/null
  "$QAD_IMG" info a.add-cow | grep -q other.raw
  "$QAD_IMG" create --force -f qed notes.txt 1M
  "$QAD_IMG" check notes.txt
}

@test "tool habits: --force never replaces an add-cow file being served" {
  requires_file "$ADDCOW_FILTER"
  truncate -s 1M disk.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw >/dev/null
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" file disk.raw addcow=a.add-cow
  refused a.add-cow "^qad-img: .*a.add-cow" \
    "$QAD_IMG" create --force -f add-cow a.add-cow --image=disk.raw
}

@test "tool habits: sizes as qemu-img parses them, with fractions and rounding" {
  "$QAD_IMG" create -f qed a.qed 1.5G
  qemu-img info --output=json a.qed | grep -q '"virtual-size": 1610612736'
  "$QAD_IMG" create -f qed b.qed 0.5M
  qemu-img info --output=json b.qed | grep -q '"virtual-size": 524288'
  # Rounded up to whole sectors, as qemu-img create does.
  "$QAD_IMG" create -f qed c.qed 1000
  qemu-img info --output=json c.qed | grep -q '"virtual-size": 1024'
  "$QAD_IMG" create -f qed d.qed 1.1K     # 1126.4 bytes
  qemu-img info --output=json d.qed | grep -q '"virtual-size": 1536'
  expect_fail_cleanly "^qad-img: SIZE: a fraction needs a unit suffix" \
    "$QAD_IMG" create -f qed e.qed 1.5
  expect_fail_cleanly "^qad-img: SIZE: cannot parse size: 1.G" \
    "$QAD_IMG" create -f qed e.qed 1.G
  expect_fail_cleanly "^qad-img: SIZE: value too large" \
    "$QAD_IMG" create -f qed e.qed 16.5E
  test ! -e e.qed
}

@test "tool habits: -V, --version, VERB --help, -q, --output=json, -U, check -r" {
  "$QAD_IMG" -V | grep -Eq '^qad-img [0-9]'
  "$QAD_IMG" --version | grep -Eq '^qad-img [0-9]'
  for v in create info check map bitmap; do
    run "$QAD_IMG" $v --help
    test "$status" -eq 0
    grep -q "^usage: qad-img $v" <<<"$output"
  done
  test -z "$("$QAD_IMG" create -q -f add-cow a.add-cow --image=disk.raw --size=1M)"
  test -f a.add-cow
  "$QAD_IMG" create -f qed a.qed 1M
  "$QAD_IMG" info --output=json a.qed | python3 -c 'import json,sys; assert json.load(sys.stdin)["virtual-size"] == 1048576'
  "$QAD_IMG" info --output json -U a.qed | python3 -c 'import json,sys; json.load(sys.stdin)'
  "$QAD_IMG" info --output=human a.qed | grep -q "virtual size"
  expect_fail_cleanly "^qad-img: --output=xml: must be human or json" \
    "$QAD_IMG" info --output=xml a.qed
  # check -r leaks|all repairs; -q keeps the exit status.
  truncate -s $(( $(stat -c %s a.qed) + 65536 )) a.qed
  run "$QAD_IMG" check -q a.qed
  test "$status" -eq 3 && test -z "$output"
  "$QAD_IMG" check -r leaks a.qed >/dev/null
  "$QAD_IMG" check a.qed
  expect_fail_cleanly "^qad-img: check: -r some: must be leaks or all" \
    "$QAD_IMG" check -r some a.qed
  expect_fail_cleanly "^qad-img: bitmap: -U" "$QAD_IMG" bitmap -U x.qdb --add b
  expect_fail_cleanly "^qad-img: info: --force is an option of create only" \
    "$QAD_IMG" info --force a.qed
}

@test "tool habits: the dispatcher takes --format in every spelling, for every verb" {
  "$QAD_IMG" create -f qed a.qed 1M >/dev/null
  for verb in info check map; do
    for spelling in "-f qed" -fqed "--format qed" --format=qed; do
      "$QAD_IMG" $verb $spelling a.qed >/dev/null
      "$QAD_IMG" $verb a.qed $spelling >/dev/null
    done
    # The format given wins over the file's magic, in every spelling.
    for spelling in "-f qdb" -fqdb "--format qdb" --format=qdb; do
      expect_fail_cleanly "is not QDB" "$QAD_IMG" $verb $spelling a.qed
    done
    expect_fail_cleanly "-f needs a format name" "$QAD_IMG" $verb a.qed -f
  done
}

@test "tool habits: every error starts with qad-img" {
  "$QAD_IMG" create -f qed a.qed 1M
  for cmd in "info missing.qed" "info --bogus a.qed" "create -f nope x 1M" \
             "frobnicate a.qed" "check -f qdb a.qed" "create -f qed y.qed 1X"; do
    run $QAD_IMG $cmd
    test "$status" -ne 0
    grep -q "^qad-img" <<<"${lines[0]}"
  done
  # Errors from the format library carry the prefix too.
  printf 'QED\0' > bad.qed
  run "$QAD_IMG" info bad.qed
  test "$status" -ne 0
  grep -q "^qad-img: bad.qed: truncated QED header" <<<"$output"
}

@test "tool habits: create -o key=value,... as qemu-img" {
  truncate -s 2M base.raw
  "$QAD_IMG" create -f qed -o cluster_size=4K,table_size=2 -o backing_file=base.raw,backing_fmt=raw a.qed 2M
  qemu-img info a.qed > info.txt
  grep -q "cluster_size: 4096" info.txt
  grep -q "backing file: base.raw" info.txt
  grep -q "backing file format: raw" info.txt
  test "$(od -A n -t u4 -j 8 -N 4 a.qed | tr -d ' ')" -eq 2
  "$QAD_IMG" create -f add-cow -o backing_file=base.raw,cluster_size=4K a.add-cow --image=disk.raw >/dev/null
  "$QAD_IMG" info a.add-cow | grep -q base.raw
  expect_fail_cleanly "^qad-img: create: -o foo=1: unknown or incomplete option" \
    "$QAD_IMG" create -f qed -o foo=1 b.qed 1M
  expect_fail_cleanly "^qad-img: create: -o cluster_size: unknown or incomplete" \
    "$QAD_IMG" create -f qed -o cluster_size b.qed 1M
  test ! -e b.qed
}

@test "tool habits: info works when the backing file is missing, and says so" {
  truncate -s 1M base.raw disk.raw
  "$QAD_IMG" create -f qed -b base.raw -F raw a.qed
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw -b base.raw >/dev/null
  "$QAD_IMG" info --output=json a.qed | grep -q '"backing-exists": true'
  "$QAD_IMG" info --output=json a.add-cow | grep -q '"backing-exists": true'
  rm base.raw
  run "$QAD_IMG" info a.qed
  test "$status" -eq 0
  grep -q "^backing file name:  base.raw$" <<<"$output"
  grep -q "^backing file:       missing: base.raw: cannot open" <<<"$output"
  grep -q "^virtual size:       1048576 bytes" <<<"$output"
  "$QAD_IMG" info --output=json a.qed | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == "base.raw"
assert d["backing-filename-format"] == "raw"
assert d["backing-exists"] is False
assert "No such file" in d["backing-error"]
assert d["virtual-size"] == 1048576 and d["dirty-flag"] is False
assert d["actual-size"] > 0'
  run "$QAD_IMG" info a.add-cow
  test "$status" -eq 0
  grep -q "^backing file:       base.raw (raw) \[missing\]$" <<<"$output"
  "$QAD_IMG" info --output=json a.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["backing-filename"] == "base.raw"
assert d["backing-filename-format"] == "raw"
assert d["backing-exists"] is False'
  # As qemu-img info does with the same QED image.
  qemu-img info a.qed | grep -q "^backing file: base.raw"
}

@test "tool habits: check's JSON keys and exit status have qemu-img's meanings" {
  requires qemu-io --version
  qemu-img create -q -f qed a.qed 1M
  qemu-io -f qed -c "write 0 128k" a.qed >/dev/null
  truncate -s +65536 a.qed
  cp a.qed b.qed
  run qemu-img check --output=json a.qed
  theirs="$output" their_status=$status
  run "$QAD_IMG" check --output=json a.qed
  test "$status" -eq "$their_status"           # 3: leaks only
  for key in total-clusters check-errors leaks allocated-clusters; do
    grep "\"$key\": [0-9]*" -o <<<"$theirs" > t
    grep "\"$key\": [0-9]*" -o <<<"$output" > o
    diff t o
  done
  # After -r the counts are what remains, fixed ones are counted apart,
  # and the exit status says the image is now clean.
  out="$("$QAD_IMG" check -r all --output=json b.qed 2>/dev/null)"
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["leaks"] == 0 and d["leaks-fixed"] == 1, d
assert d["corruptions"] == 0 and d["check-errors"] == 0, d
assert d["total-clusters"] == 16, d' "$out"
  qemu-img check b.qed
  # add-cow: guest clusters and clusters in the image, qemu-img's names.
  truncate -s 1M disk.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw >/dev/null
  "$QAD_IMG" check --output=json a.add-cow | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["total-clusters"] == 16 and d["allocated-clusters"] == 0, d
assert d["check-errors"] == 0, d'
  # QDB: a leak is counted in leaks, and after -r in leaks-fixed.
  "$QAD_IMG" create -f qdb a.qdb 1M >/dev/null
  truncate -s +65536 a.qdb
  run "$QAD_IMG" check --output=json a.qdb
  test "$status" -eq 3
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["format"] == "qdb" and d["leaks"] == 1 and d["leaks-fixed"] == 0, d
assert d["repaired"] is False, d' "$output"
  out="$("$QAD_IMG" check -r all --output=json a.qdb 2>/dev/null)"
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["leaks"] == 0 and d["leaks-fixed"] == 1 and d["repaired"], d' "$out"
  # One document for every format: the same leading keys, in order.
  for f in a.qed a.add-cow a.qdb; do
    "$QAD_IMG" check --output=json $f 2>/dev/null | python3 -c '
import json, sys
print(list(json.load(sys.stdin))[:7])'
  done > keys
  cat keys
  test "$(sort -u keys | wc -l)" -eq 1
  grep -q "filename.*format.*check-errors.*corruptions.*leaks-fixed" keys
}

@test "tool habits: map prints what qemu-img map prints, human and JSON, through a chain" {
  requires qemu-io --version
  qemu-img create -q -f raw base.raw 3M
  qemu-io -f raw -c "write -P 1 1M 1M" base.raw >/dev/null
  qemu-img create -q -f qed -b base.raw -F raw mid.qed 6M
  qemu-io -f qed -c "write -P 2 0 64k" -c "write -P 3 4M 64k" mid.qed >/dev/null
  mkdir sub
  qemu-img create -q -f qed -b ../mid.qed -F qed sub/top.qed 8M
  qemu-io -f qed -c "write -P 4 128k 64k" -c "write -z 1536k 64k" sub/top.qed >/dev/null
  qemu-img create -q -f qed alone.qed 1M
  qemu-io -f qed -c "write -P 5 64k 128k" alone.qed >/dev/null
  for f in sub/top.qed mid.qed alone.qed; do
    diff <(qemu-img map "$f") <("$QAD_IMG" map "$f")
    diff <(qemu-img map --output=json "$f") <("$QAD_IMG" map --output=json "$f")
  done
  # The backing's data is shown in the backing file, as qemu-img does.
  "$QAD_IMG" map sub/top.qed | grep -q "^0x100000        0x80000         0x100000        sub/../base.raw$"
}

@test "tool habits: add-cow map has qemu-img map's shape, through a QED backing chain" {
  requires qemu-io --version
  requires_file "$ADDCOW_FILTER"
  requires_nbdsh
  qemu-img create -q -f raw base.raw 1M
  qemu-io -f raw -c "write -P 1 0 256k" base.raw >/dev/null
  qemu-img create -q -f qed -b base.raw -F raw mid.qed 1M
  qemu-io -f qed -c "write -P 2 512k 64k" -c "write -z 0 64k" mid.qed >/dev/null
  truncate -s 2M disk.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw -b mid.qed -F qed >/dev/null
  start_nbdkit "$BATS_TEST_TMPDIR/s" --filter="$ADDCOW_FILTER" file disk.raw addcow=a.add-cow
  nbdsh -u "$(nbd_uri "$BATS_TEST_TMPDIR/s")" -c 'h.pwrite(b"3" * 65536, 1 << 20); h.flush()'
  stop_nbdkit "$BATS_TEST_TMPDIR/s"
  "$QAD_IMG" map --output=json a.add-cow > map.json
  cat map.json
  python3 - <<'PY'
import json
m = json.load(open("map.json"))
pos = 0
for e in m:
    assert e["start"] == pos, e
    pos += e["length"]
    for k in ("depth", "present", "zero", "data"):
        assert k in e, e
assert pos == 2 << 20
def at(o):
    return next(e for e in m if e["start"] <= o < e["start"] + e["length"])
assert at(0)["depth"] == 1 and at(0)["zero"] and not at(0)["data"]      # QED zero cluster
assert at(64 << 10)["depth"] == 2 and at(64 << 10)["offset"] == 64 << 10  # base.raw data
assert at(512 << 10)["depth"] == 1 and at(512 << 10)["data"]             # mid.qed data
assert at(768 << 10)["depth"] == 2 and at(768 << 10)["zero"]             # base.raw hole
e = at(1 << 20)
assert e["depth"] == 0 and e["data"] and e["offset"] == 1 << 20 and e["source"] == "image"
assert at(1536 << 10)["depth"] == 1 and not at(1536 << 10)["present"]    # past the backing's end
PY
  "$QAD_IMG" map a.add-cow | grep -q "^0x100000        0x10000         0x100000        ./disk.raw$"
  "$QAD_IMG" map a.add-cow | grep -q "^0x80000         0x10000         0x[0-9a-f]*  *./mid.qed$"
  # A missing backing file: bit-0 ranges are reported as data, without offset.
  rm base.raw mid.qed
  "$QAD_IMG" map --output=json a.add-cow | python3 -c '
import json, sys
m = json.load(sys.stdin)
assert m[0]["depth"] == 1 and m[0]["data"] and "offset" not in m[0], m'
}

@test "tool habits: check -p shows progress as qemu-img -p does" {
  requires qemu-io --version
  "$QAD_IMG" create -o cluster_size=4K,table_size=2 a.qed 1000M
  qemu-io -f qed -c "write 0 1M" -c "write 500M 1M" a.qed >/dev/null
  "$QAD_IMG" check -p a.qed > out
  # Steps rewritten in place with \r, rising to 100% and a newline.
  tr '\r' '\n' < out | grep -E '^    \([0-9.]+/100%\)$' > steps
  test "$(wc -l < steps)" -gt 10
  test "$(tail -1 steps)" = "    (100.00/100%)"
  sort -t'(' -k2 -n -c steps
  grep -q "No errors were found" out
  # -q silences it; -p is refused where it means nothing.
  test -z "$("$QAD_IMG" check -p -q a.qed)"
  expect_fail_cleanly "^qad-img: info: -p is for verbs that can take long" \
    "$QAD_IMG" info -p a.qed
}
