#!/usr/bin/env bats
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# scripts/nbd-python.sh, the one lookup of a python3 that has libnbd's
# nbd module (used by tests/functions.sh and bench/bench-lib.sh): a
# python3 without the module first on the PATH (a pyenv or virtualenv
# one) does not break the tests' Python clients or nbdsh, and with no
# usable python3 at all every use says so.

load functions.sh

LOOKUP="$abs_top_srcdir/scripts/nbd-python.sh"

setup ()
{
  requires_file "$LOOKUP"
  requires /usr/bin/python3 -c 'import nbd'
  cd "$BATS_TEST_TMPDIR"
  # A python3 that runs but cannot import nbd (-S: no site-packages).
  mkdir bin
  printf '#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n' > bin/python3
  chmod +x bin/python3
  ! bin/python3 -c 'import nbd' 2>/dev/null
}

@test "nbd-python: the python3 found is absolute and needs no environment" {
  # With the PATH as it is (on a pyenv machine python3 is a shim that
  # finds the system python3 only with PYENV_VERSION=system).
  run bash -c '. "$1"; nbd_python' - "$LOOKUP"
  [ "$status" -eq 0 ]
  [ "${output:0:1}" = / ]
  env -u PYENV_VERSION "$output" -c 'import nbd'
}

@test "nbd-python: a python3 without nbd first on the PATH is passed over" {
  run env PATH="$PWD/bin:$PATH" bash -c '. "$1"; nbd_python' - "$LOOKUP"
  [ "$status" -eq 0 ]
  [ "${output:0:1}" = / ]
  "$output" -c 'import nbd'
  # NBD_PYTHON naming that python3 is passed over too.
  run env PATH="$PWD/bin:$PATH" NBD_PYTHON="$PWD/bin/python3" \
    bash -c '. "$1"; nbd_python' - "$LOOKUP"
  [ "$status" -eq 0 ]
  "$output" -c 'import nbd'
}

@test "nbd-python: nbdsh and the Python clients of the tests use it" {
  PATH="$PWD/bin:$PATH"
  NBD_PYTHON=
  load functions.sh             # as a test file does, with this PATH
  "$NBD_PYTHON" -c 'import nbd'
  run nbdsh -c 'print(h.get_version() != "")'
  [ "$status" -eq 0 ]
  [ "$output" = True ]
}

@test "nbd-python: nbdsh in the shell nbdkit --run starts uses it too" {
  # /bin/sh, not bash: a shell function would not reach it.  nbdsh
  # from the package would run the python3 without nbd below.
  PATH="$PWD/bin:$PATH"
  run nbdkit -U - memory 1M \
    --run 'nbdsh -u "$uri" -c "print(h.get_size())"'
  [ "$status" -eq 0 ]
  [ "$output" = 1048576 ]
}

@test "nbd-python: with no python3 that has nbd, it says so" {
  # PYTHONHOME pointing nowhere: no python3 starts.
  run env PYTHONHOME=/nonexistent bash -c '. "$1"; nbd_python' - "$LOOKUP"
  [ "$status" -ne 0 ]
  [[ "$output" = *"no python3 with libnbd's nbd module"*python3-libnbd*NBD_PYTHON* ]]
  export PYTHONHOME=/nonexistent
  NBD_PYTHON=
  load functions.sh
  unset PYTHONHOME
  [ "$NBD_PYTHON" = _no_nbd_python ]
  run -127 "$NBD_PYTHON" -c 'import nbd'
  [[ "$output" = *"no python3 with libnbd's nbd module"* ]]
}
