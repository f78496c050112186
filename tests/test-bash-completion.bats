#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# bash-completion/qad-img: sourced into a bash, then asked what it
# completes for partial command lines, as readline would ask it.

load functions.sh

COMPLETION="$abs_top_srcdir/bash-completion/qad-img"

setup ()
{
  requires_file "$COMPLETION"
  cd "$BATS_TEST_TMPDIR"
  touch disk.qed disk.raw other.qdb
  mkdir images
}

# completions LINE: the completions (one line, sorted) for LINE with the
# cursor at its end.
completions ()
{
  bash -c '
    source "$1"
    COMP_LINE="$2"; COMP_POINT=${#2}
    COMP_WORDS=($2); COMP_CWORD=${#COMP_WORDS[@]}
    _qad_img
    printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "
  ' bash "$COMPLETION" "$1"
}

@test "bash completion: registered for qad-img" {
  run bash -c 'source "$1"; complete -p qad-img' bash "$COMPLETION"
  test "$status" -eq 0
  test "$output" = "complete -F _qad_img qad-img"
}

# completes_to LINE EXPECTED [LINE EXPECTED]...: each LINE completes
# to exactly EXPECTED.
completes_to ()
{
  local got
  while test $# -ge 2; do
    got="$(completions "$1")"
    test "$got" = "$2" || {
      echo "\"$1\" completes to \"$got\", expected \"$2\"" >&2; return 1; }
    shift 2
  done
}

@test "bash completion: verbs, the ones being added included" {
  completes_to \
    'qad-img ' 'amend bitmap check commit compare create info map rebase resize ' \
    'qad-img c' 'check commit compare create ' \
    'qad-img re' 'rebase resize ' \
    'qad-img -' '--help --version -V -h '
}

@test "bash completion: options depend on the verb" {
  completes_to \
    'qad-img check --r' '--repair ' \
    'qad-img create --f' '--force --format= ' \
    'qad-img info --f' '--force-share --format= ' \
    'qad-img resize --s' '--shrink '
  [[ "$(completions 'qad-img rebase -')" == *" -u "* ]]
  [[ "$(completions 'qad-img bitmap --')" == *"--into "*"--merge "* ]]
  # -U is for read-only verbs only, as qad-img enforces.
  [[ "$(completions 'qad-img bitmap -')" != *"-U "* ]]
  [[ "$(completions 'qad-img create -')" != *"-U "* ]]
}

@test "bash completion: values of options with a fixed set" {
  completes_to \
    'qad-img info -f q' 'qdb qed ' \
    'qad-img info --output=j' 'json ' \
    'qad-img check -r ' 'all leaks ' \
    'qad-img create --backing-format=' 'qed raw ' \
    'qad-img map --backing-policy=' 'follow inside refuse '
}

@test "bash completion: file names for FILE arguments and file options" {
  completes_to \
    'qad-img info d' 'disk.qed disk.raw ' \
    'qad-img compare disk.qed o' 'other.qdb ' \
    'qad-img create --image=disk.r' 'disk.raw ' \
    'qad-img info --backing-dir=im' 'images '
}

@test "bash completion: -p and --output= offered where qad-img takes them" {
  requires_file "$QAD_IMG"
  completes_to \
    'qad-img resize --p' '--progress ' \
    'qad-img commit --p' '--progress ' \
    'qad-img resize --o' '--output= ' \
    'qad-img commit --j' '--json '
  # -p exactly where the tool accepts it (it refuses -p elsewhere,
  # before --help is looked at).
  local v offered accepted
  for v in create info check map bitmap compare rebase amend resize commit; do
    offered=no accepted=no
    [[ " $(completions "qad-img $v -") " == *" -p "* ]] && offered=yes
    "$QAD_IMG" "$v" -p --help >/dev/null 2>&1 && accepted=yes
    test "$offered" = "$accepted" || {
      echo "$v: -p offered: $offered, accepted: $accepted" >&2; return 1; }
  done
}
