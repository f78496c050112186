# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the test-addcow-*.bats files.  Load after
# functions.sh:   load functions.sh ; load addcow-helpers.sh

ADDCOW_WORKLOAD="$TESTS_BIN/addcow-workload"

requires_addcow ()
{
  requires_file "$ADDCOW_FILTER"
  requires nbdkit --version
}

# reference_of BACKING SIZE OUT: what the disk reads as before any
# write: the backing file, cut or zero-extended to SIZE.
reference_of ()
{
  cp "$1" "$3"
  truncate -s "$2" "$3"
}

# start_addcow SOCK [ARGS...]: nbdkit with the filter over the file
# plugin serving disk.raw with sidecar disk.add-cow (in the cwd).
start_addcow ()
{
  local sock="$1"; shift
  start_nbdkit "$sock" --filter="$ADDCOW_FILTER" file disk.raw \
    addcow=disk.add-cow "$@"
}

# nbdsh_on SOCK CODE: run nbdsh Python code against the server.
nbdsh_on ()
{
  nbdsh -u "$(nbd_uri "$1")" -c "$2"
}

# start_addcow_eval SOCK FLUSH [ARGS...]: the filter over an eval
# plugin serving disk.raw (1 MiB) with sidecar disk.add-cow, whose flush
# runs the shell code FLUSH.  ARGS go to nbdkit: more eval scripts
# (can_flush= is required, can_multi_conn= optional) and filter
# parameters.
start_addcow_eval ()
{
  local sock="$1" flush="$2"; shift 2
  start_nbdkit "$sock" --filter="$ADDCOW_FILTER" eval \
    get_size='echo 1048576' can_write='exit 0' \
    pread="dd if=$PWD/disk.raw iflag=skip_bytes,count_bytes skip=\$4 count=\$3 status=none" \
    pwrite="dd of=$PWD/disk.raw oflag=seek_bytes conv=notrunc seek=\$4 status=none" \
    flush="$flush" addcow=disk.add-cow addcow-image=disk.raw "$@"
}
