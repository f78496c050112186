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

# random_file FILE SIZE [SEED]: deterministic pseudo-random content.
random_file ()
{
  python3 -c '
import random, sys
r = random.Random(int(sys.argv[3]))
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    while n > 0:
        k = min(n, 1 << 20)
        f.write(r.randbytes(k))
        n -= k
' "$1" "$2" "${3:-1}"
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

# field_le32 FILE OFFSET: a little-endian 32-bit field.
field_le32 ()
{
  od -A n -t u4 -j "$2" -N 4 --endian=little "$1" | tr -d ' '
}

field_le64 ()
{
  od -A n -t u8 -j "$2" -N 8 --endian=little "$1" | tr -d ' '
}

# put_le32 FILE OFFSET VALUE / put_le64: patch a header field.
put_le32 ()
{
  python3 -c 'import struct,sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(struct.pack("<I", int(sys.argv[3], 0)))' "$@"
}

put_le64 ()
{
  python3 -c 'import struct,sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(struct.pack("<Q", int(sys.argv[3], 0)))' "$@"
}

put_bytes ()
{
  python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2]))
    f.write(sys.argv[3].encode().decode("unicode_escape").encode("latin1"))' "$@"
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
