#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Every command block of README.md works when pasted.  The blocks of
# one "## " section are run in order, in one empty directory, each by
# "bash -e" (a failing line fails the block), as a reader pasting them
# into one terminal would; servers they start are stopped at the end
# of the section.  The reader's setup is recreated: qad-img on the
# PATH; ./qed.so, ./qed-filter.so, ./addcow.so and ./dirty-bitmap.so
# linked from the build tree; and, for the lines that say "after make
# install", an nbdkit wrapper that turns the short names (qed,
# --filter=addcow...) into the build tree's objects.  /tmp/ in a block
# becomes the section's directory, so that tests running in parallel
# do not share sockets.
#
# A block preceded by "<!-- not run by tests/test-readme.bats: REASON -->"
# is only illustrative and is skipped; it must give a reason.

load functions.sh

README="$abs_top_srcdir/README.md"
MARKER='<!-- not run by tests/test-readme.bats:'

setup ()
{
  requires_file "$README"
  requires_file "$QAD_IMG"
  requires qemu-io --version
  requires nbdinfo --version
  cd "$BATS_TEST_TMPDIR"
}

# extract DIR: one file DIR/NNN-SS.sh per block (NNN its number, SS its
# section), and DIR/NNN-SS.skip holding the reason of a marked block.
extract ()
{
  mkdir -p "$1"
  awk -v dir="$1" -v marker="$MARKER" '
    /^## / { sec++ }
    /^```/ {
      if (!inb) {
        inb = 1; n++
        f = sprintf ("%s/%03d-%02d", dir, n, sec)
        printf "" > (f ".sh")
        if (index (prev, marker) == 1) {
          reason = substr (prev, length (marker) + 1)
          sub (/-->[ \t]*$/, "", reason)
          gsub (/^[ \t]+|[ \t]+$/, "", reason)
          print reason > (f ".skip")
        }
      } else
        inb = 0
      prev = $0
      next
    }
    inb { print > (f ".sh") }
    { prev = $0 }
  ' "$README"
}

# make_env DIR: the setup of a reader, in DIR (see the top of this file).
make_env ()
{
  local d="$1" o
  mkdir -p "$d/bin" "$d/.pids"
  ln -s "$QAD_IMG" "$d/bin/qad-img"
  for o in qed.so qed-filter.so addcow.so dirty-bitmap.so; do
    ln -s "$abs_top_builddir/$o" "$d/$o"
  done
  cat > "$d/bin/nbdkit" <<WRAPPER
#!/bin/bash
args=()
plugin_seen=
for a in "\$@"; do
  case "\$a" in
    --filter=qed) a="--filter=$abs_top_builddir/qed-filter.so" ;;
    --filter=addcow) a="--filter=$abs_top_builddir/addcow.so" ;;
    --filter=dirty-bitmap) a="--filter=$abs_top_builddir/dirty-bitmap.so" ;;
    qed) test -n "\$plugin_seen" || a="$abs_top_builddir/qed.so" ;;
  esac
  case "\$a" in -*) ;; *) plugin_seen=1 ;; esac
  args+=("\$a")
done
exec $(command -v nbdkit) -P "$d/.pids/\$\$" "\${args[@]}"
WRAPPER
  chmod +x "$d/bin/nbdkit"
}

stop_section_servers ()
{
  local p
  for p in "$1"/.pids/*; do
    test -s "$p" && echo "$(cat "$p")" >> "$(_pids_file)"
  done
  cleanup_servers
}

@test "README: every command block works when pasted" {
  extract blocks
  local block sec last_sec="" dir="" ran=0 failed=0
  for block in blocks/*.sh; do
    block="${block%.sh}"
    sec="${block##*-}"
    test -f "$block.skip" && continue
    if test "$sec" != "$last_sec"; then
      test -z "$dir" || stop_section_servers "$dir"
      dir="$BATS_TEST_TMPDIR/s$sec"
      make_env "$dir"
      last_sec="$sec"
    fi
    sed "s|/tmp/|$dir/|g" "$block.sh" > "$dir/block.sh"
    if ! (cd "$dir" && PATH="$dir/bin:$PATH" timeout 120 \
            bash -e -o pipefail block.sh) > "$block.log" 2>&1; then
      echo "README block ${block##*/} failed:" >&2
      sed 's/^/  | /' "$block.sh" >&2
      sed 's/^/  > /' "$block.log" >&2
      failed=$((failed + 1))
    fi
    ran=$((ran + 1))
  done
  test -z "$dir" || stop_section_servers "$dir"
  echo "ran $ran blocks, $failed failed" >&2
  test "$failed" -eq 0
  # Marking every block illustrative would pass trivially: the plugin,
  # add-cow and dirty-bitmap sections have runnable blocks.
  test "$ran" -ge 6
}

@test "README: an illustrative block says why it is not run" {
  extract blocks
  local f n=0
  for f in blocks/*.skip; do
    test -s "$f" && test "$(cat "$f")" != "" || {
      echo "${f%.skip}: marked not run without a reason" >&2; return 1; }
    n=$((n + 1))
  done
  # The marker is recognised (else every block would run, or fail).
  test "$n" -ge 1
}
