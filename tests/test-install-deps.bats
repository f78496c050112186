#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# scripts/install-deps.sh: "minimal" (quickstart.sh) holds every
# package the build and the demo use, and nothing only the tests need;
# "full" (check.sh) adds the test tools.  The packages are found from
# the files the build and quickstart.sh use, with dpkg -S, so the test
# needs a Debian system with them installed.

load functions.sh

DEPS="$abs_top_srcdir/scripts/install-deps.sh"

setup ()
{
  requires_file "$DEPS"
  requires dpkg-query --version
}

# owner FILE: the Debian package that ships FILE (symlinks resolved).
owner ()
{
  local f
  f="$(readlink -f "$1")"
  dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1 ||
    dpkg -S "$1" | head -1 | cut -d: -f1
}

# closure PACKAGES...: the packages and, recursively, what they depend
# on (installed ones; alternatives and versions ignored): a file may
# come from a dependency, as /usr/bin/pkg-config comes from pkgconf-bin
# through Debian 12's transitional pkg-config.
closure ()
{
  dpkg-query -W -f='${Package} ${Depends}, ${Pre-Depends}\n' |
    awk -v want="$*" '
      { deps[$1] = $0 }
      END {
        n = split (want, q, " ")
        for (i = 1; i <= n; i++) seen[q[i]] = 1
        for (i = 1; i <= n; i++) {
          d = deps[q[i]]; sub (/^[^ ]+ /, "", d)
          m = split (d, parts, /[,|]/)
          for (j = 1; j <= m; j++) {
            p = parts[j]; gsub (/\(.*\)|:any/, "", p); gsub (/ /, "", p)
            if (p != "" && !(p in seen)) { seen[p] = 1; q[++n] = p }
          }
        }
        for (p in seen) print p
      }'
}

@test "install-deps: minimal has what the build and quickstart.sh use" {
  minimal="$(closure $("$DEPS" --list minimal))"
  # What quickstart.sh runs (demo and build), and the headers configure needs.
  for f in "$(command -v qemu-img)" "$(command -v qemu-io)" \
           "$(command -v nbdkit)" "$(command -v nbdinfo)" \
           "$(command -v autoreconf)" "$(command -v automake)" \
           "$(command -v libtoolize)" "$(command -v pkg-config)" \
           /usr/include/nbdkit-plugin.h /usr/include/libnbd.h; do
    test -e "$f"
    p="$(owner "$f")"
    test -n "$p" || { echo "no package owns $f" >&2; return 1; }
    grep -qx -- "${p%%:*}" <<<"$minimal" || {
      echo "$f is in package $p, not in the minimal list" >&2; return 1; }
  done
  # quickstart.sh asks for the minimal set.
  grep -q '^\./scripts/install-deps\.sh minimal$' "$abs_top_srcdir/quickstart.sh"
}

@test "install-deps: the test tools are in full only, and full has all of minimal" {
  minimal="$("$DEPS" --list minimal)"
  full="$("$DEPS" --list full)"
  for p in bats python3-libnbd valgrind guestfish lighttpd fio; do
    ! grep -qx "$p" <<<"$minimal"
    grep -qx "$p" <<<"$full"
  done
  for p in $minimal; do
    grep -qx "$p" <<<"$full"
  done
  grep -q 'scripts/install-deps\.sh" full$' "$abs_top_srcdir/check.sh"
  run "$DEPS" --list bogus
  test "$status" -ne 0
}
