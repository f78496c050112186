# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Sourced by tests/functions.sh and bench/bench-lib.sh: find a python3
# that has libnbd's "nbd" module (Debian: python3-libnbd).
#
# The first python3 on PATH may be a pyenv or virtualenv one without
# it (and nbdsh is "python3 -m nbd" with that python3), so try, in
# order: $NBD_PYTHON, python3 on PATH (with PYENV_VERSION=system, so
# that a pyenv shim falls through to the system python3), then
# /usr/bin/python3 and /usr/local/bin/python3.

# nbd_python: print the absolute path of the first candidate that
# imports nbd; if none does, say so on stderr and return 1.
nbd_python ()
{
  local p exe
  for p in ${NBD_PYTHON:+"$NBD_PYTHON"} python3 /usr/bin/python3 \
           /usr/local/bin/python3; do
    if exe="$(PYENV_VERSION=system "$p" -c \
                'import sys, nbd; print(sys.executable)' 2>/dev/null)" &&
       test -n "$exe"; then
      echo "$exe"
      return 0
    fi
  done
  echo "${0##*/}: no python3 with libnbd's nbd module" \
       "(tried ${NBD_PYTHON:+$NBD_PYTHON, }python3 on PATH," \
       "/usr/bin/python3, /usr/local/bin/python3):" \
       "apt-get install python3-libnbd, or set NBD_PYTHON" >&2
  return 1
}
