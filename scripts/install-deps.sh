#!/bin/bash
# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause
#
# Install the Debian 12 packages the build and the tests need, if any
# is missing.  Used by check.sh and quickstart.sh.  SKIP_INSTALL=1
# skips it.

set -euo pipefail
test -z "${SKIP_INSTALL:-}" || exit 0

packages=(
  build-essential autoconf automake libtool pkg-config perl
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin python3-libnbd
  qemu-utils bats bats-assert bats-support fio valgrind
  guestfish libguestfs-tools linux-image-amd64
  lighttpd curl openssh-server openssh-client
)

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
