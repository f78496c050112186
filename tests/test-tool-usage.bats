#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Every line qad-img writes to stderr after a mistake, usage lines
# included, starts with "qad-img:" (as qemu-img's start with
# "qemu-img:"), so that it can be told apart in a script's log.

load functions.sh

setup ()
{
  requires_file "$QAD_IMG"
  cd "$BATS_TEST_TMPDIR"
}

# every_line_prefixed CMD...: CMD fails, says something on stderr, and
# every line of that starts with "qad-img: ".
every_line_prefixed ()
{
  local err status=0
  err="$("$@" 2>&1 >/dev/null)" || status=$?
  if test "$status" -eq 0 || test -z "$err"; then
    echo "expected a failure with a message: $* (status $status)" >&2
    return 1
  fi
  if grep -v '^qad-img: ' <<<"$err" >&2; then
    echo "^ lines without the qad-img: prefix, from: $*" >&2
    return 1
  fi
}

@test "tool usage: every error and usage line starts with qad-img:" {
  "$QAD_IMG" create a.qed 1M
  "$QAD_IMG" create -f qdb a.qdb 1M
  truncate -s 1M disk.raw
  "$QAD_IMG" create -f add-cow a.add-cow --image=disk.raw >/dev/null
  every_line_prefixed "$QAD_IMG"
  every_line_prefixed "$QAD_IMG" no-such-verb
  every_line_prefixed "$QAD_IMG" info
  every_line_prefixed "$QAD_IMG" create
  every_line_prefixed "$QAD_IMG" create -f add-cow
  every_line_prefixed "$QAD_IMG" create -f qdb
  every_line_prefixed "$QAD_IMG" compare a.qed
  every_line_prefixed "$QAD_IMG" bitmap a.qdb
  for f in a.qed a.qdb a.add-cow; do
    for verb in info check map; do
      every_line_prefixed "$QAD_IMG" $verb $f extra-argument
    done
  done
  every_line_prefixed "$QAD_IMG" info missing-file.qed
  every_line_prefixed "$QAD_IMG" map --output=xml a.qed
}

@test "tool usage: --help is on stdout, exit 0, and says usage: first" {
  run "$QAD_IMG" --help
  test "$status" -eq 0
  test "${lines[0]}" = "usage: qad-img VERB [OPTIONS] FILE ..."
  run "$QAD_IMG" check --help
  test "$status" -eq 0
  [[ "${lines[0]}" == "usage: qad-img check "* ]]
}
