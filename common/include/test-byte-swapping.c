/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "byte-swapping.h"

int
main (void)
{
  unsigned char buf[9] = { 0xff, 1, 2, 3, 4, 5, 6, 7, 8 };

  /* Unaligned loads. */
  assert (load_le16 (buf + 1) == 0x0201);
  assert (load_be16 (buf + 1) == 0x0102);
  assert (load_le32 (buf + 1) == 0x04030201);
  assert (load_be32 (buf + 1) == 0x01020304);
  assert (load_le64 (buf + 1) == UINT64_C (0x0807060504030201));
  assert (load_be64 (buf + 1) == UINT64_C (0x0102030405060708));

  memset (buf, 0, sizeof buf);
  store_le64 (buf + 1, UINT64_C (0x0807060504030201));
  assert (buf[1] == 1 && buf[8] == 8 && buf[0] == 0);
  store_be64 (buf + 1, UINT64_C (0x0807060504030201));
  assert (buf[1] == 8 && buf[8] == 1);
  store_le32 (buf, 0xa1b2c3d4);
  assert (load_le32 (buf) == 0xa1b2c3d4 && buf[0] == 0xd4);
  store_be32 (buf, 0xa1b2c3d4);
  assert (load_be32 (buf) == 0xa1b2c3d4 && buf[0] == 0xa1);
  store_le16 (buf, 0xabcd);
  assert (buf[0] == 0xcd && load_le16 (buf) == 0xabcd);
  store_be16 (buf, 0xabcd);
  assert (buf[0] == 0xab && load_be16 (buf) == 0xabcd);
  return 0;
}
