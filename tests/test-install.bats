#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# "make install DESTDIR=..." of this build tree: what goes where, what
# does not go at all (libtool archives), the man pages' sections and
# the installed paths they cite, and an uninstall that leaves nothing.
# (make distcheck proves --with-plugindir and --with-filterdir: it
# configures with them.)

load functions.sh

setup ()
{
  requires_file "$abs_top_builddir/Makefile"
  requires make --version
  requires pod2man --help
  requires man --version
  cd "$BATS_TEST_TMPDIR"
}

# makevar NAME: a variable of the top Makefile, expanded.
makevar ()
{
  make -s -C "$abs_top_builddir" --no-print-directory -f Makefile -f - \
    print-var VAR="$1" <<<'print-var: ; @echo $($(VAR))'
}

@test "install: objects, tool, man pages, specs and completion where configured" {
  dest="$BATS_TEST_TMPDIR/dest"
  make -s -C "$abs_top_builddir" install DESTDIR="$dest" >/dev/null
  plugindir="$(makevar plugindir)"
  filterdir="$(makevar filterdir)"
  test -n "$plugindir" && test -n "$filterdir"
  test -f "$dest$plugindir/nbdkit-qed-plugin.so"
  for f in addcow dirty-bitmap qed; do
    test -f "$dest$filterdir/nbdkit-$f-filter.so"
  done
  test -x "$dest$(makevar bindir)/qad-img"
  test -f "$dest$(makevar bashcompdir)/qad-img"
  for s in qed add-cow qdb; do
    test -f "$dest$(makevar docdir)/specs/$s.txt"
  done
  # nbdkit loads the .so: no libtool archive, no static library.
  test -z "$(find "$dest" -name '*.la' -o -name '*.a')"

  # Every man page: nbdkit's sections; the specs it cites are installed.
  mandir="$dest$(makevar mandir)/man1"
  for page in nbdkit-qed-plugin nbdkit-qed-filter nbdkit-addcow-filter \
              nbdkit-dirty-bitmap-filter qad-img; do
    text="$(MANWIDTH=200 man -l "$mandir/$page.1" 2>/dev/null)"
    for section in NAME SYNOPSIS DESCRIPTION ENVIRONMENT FILES VERSION \
                   'SEE ALSO' LICENSE; do
      grep -q "^$section\$" <<<"$text" || {
        echo "$page: no $section section" >&2; return 1; }
    done
    if test $page = qad-img; then
      grep -q '^OPTIONS$' <<<"$text"
    else
      grep -q '^DEBUG FLAGS$' <<<"$text"
    fi
    ! grep -q '@[a-zA-Z_]*@\|docs/specs' <<<"$text"
    cited="$(grep -o '/[^ ]*/specs/[a-z-]*\.txt' <<<"$text" | sort -u)"
    test -n "$cited"
    for f in $cited; do
      test -f "$dest$f" || { echo "$page cites $f, not installed" >&2; return 1; }
    done
  done

  make -s -C "$abs_top_builddir" uninstall DESTDIR="$dest" >/dev/null
  left="$(find "$dest" ! -type d)"
  test -z "$left" || { echo "left after uninstall: $left" >&2; return 1; }
}
