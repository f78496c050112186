#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Install the Debian 12 packages that are missing:
#   install-deps.sh minimal   what ./quickstart.sh needs: the build and
#                             the demo (qemu-img/qemu-io, nbdinfo)
#   install-deps.sh [full]    also everything the tests use (check.sh)
#   install-deps.sh --list MODE   print MODE's packages, install nothing
# SKIP_INSTALL=1 skips it.

set -euo pipefail

list=
if test "${1:-}" = "--list"; then
  list=1
  shift
fi
test -n "$list" || test -z "${SKIP_INSTALL:-}" || exit 0

mode="${1:-full}"
packages=(
  build-essential autoconf automake libtool pkg-config perl
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin qemu-utils
)
case "$mode" in
  minimal) ;;
  full)
    packages+=(
      python3-libnbd bats bats-assert bats-support fio valgrind
      guestfish libguestfs-tools linux-image-amd64
      lighttpd curl openssh-server openssh-client
    ) ;;
  *)
    echo "install-deps: usage: install-deps.sh [minimal|full]" >&2
    exit 1 ;;
esac

if test -n "$list"; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
test ${#missing[@]} -eq 0 && exit 0

echo "installing: ${missing[*]}"
if test "$(id -u)" -ne 0; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: not root and no sudo; install these first: ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
