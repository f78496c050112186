# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the test-qed-filter-*.bats files.  Load after
# functions.sh and qed-helpers.sh.

# The filter from the build tree (qed.so is the plugin).
QED_FILTER="$abs_top_builddir/qed-filter.so"

. "$BATS_TEST_DIRNAME/web-server.sh"

# requires_qed_filter: the filter is built by this tree, so one that
# is missing or that nbdkit cannot load fails the test (never a skip).
requires_qed_filter ()
{
  requires_file "$QED_FILTER"
  local out
  out="$(nbdkit --filter="$QED_FILTER" null --version 2>&1)" || {
    echo "nbdkit cannot load $QED_FILTER: $out" >&2
    return 1
  }
}

requires_web ()
{
  requires lighttpd -v
  requires curl --version
  requires nbdkit curl --version
}

# filter_check IMAGE EXPECTED_RAW EXPECTED_MAP ARGS...: serve IMAGE's
# guest view with nbdkit ARGS (the plugin and its parameters, with the
# filter) and compare the bytes with EXPECTED_RAW and the normalised
# qemu-img map with EXPECTED_MAP.  With LOOSE_HOST_ZERO=1, holes in
# the image file under allocated clusters are not compared (their
# extent depends on the host filesystem's writeback state).
filter_check ()
{
  local expected="$1" map="$2"; shift 2
  rm -f served.raw served.json
  nbdkit -U - --filter="$QED_FILTER" "$@" --run '
    nbdcopy "$uri" served.raw &&
    qemu-img map --output=json -f raw "$uri" > served.json'
  cmp "$expected" served.raw
  normalize_map < served.json > served.map
  if test -n "${LOOSE_HOST_ZERO:-}"; then
    without_host_zero "$map" > loose-expected.map
    without_host_zero served.map > loose-served.map
    diff -u loose-expected.map loose-served.map
  else
    diff -u "$map" served.map
  fi
}

# without_host_zero MAP: a normalised map as seen through a plugin with
# no extents (curl): allocated clusters that are holes in the image
# file ("data zero") read as plain data.
without_host_zero ()
{
  python3 - "$1" <<'PY'
import sys
out = []
for line in open(sys.argv[1]):
    s, l, d, z = line.split()
    if d == "data":
        z = "-"
    s, l = int(s), int(l)
    if out and out[-1][2:] == [d, z] and out[-1][0] + out[-1][1] == s:
        out[-1][1] += l
    else:
        out.append([s, l, d, z])
for s, l, d, z in out:
    print(s, l, d, z)
PY
}
