/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the bitmap geometry and name helpers (the scans are
 * lsb-bits.h's, tested in common/include/test-lsb-bits.c).
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addcow.h"

int
main (void)
{
  uint8_t bm[64];

  /* Geometry. */
  assert (addcow_nr_clusters (0, 16) == 0);
  assert (addcow_nr_clusters (1, 16) == 1);
  assert (addcow_nr_clusters (65536, 16) == 1);
  assert (addcow_nr_clusters (65537, 16) == 2);
  assert (addcow_bitmap_size (0, 16) == 0);
  assert (addcow_bitmap_size (1, 16) == 65536);
  assert (addcow_bitmap_size (UINT64_C (1) << 40, 16) == 2 * 1024 * 1024);
  assert (addcow_bitmap_size (UINT64_C (1) << 40, 12) == 32 * 1024 * 1024);
  assert (addcow_bitmap_size (UINT64_MAX, 12) == UINT64_C (1) << 49);
  assert (addcow_bitmap_size (UINT64_MAX, 21) == UINT64_C (1) << 40);

  /* LSB first: cluster 8j+k is bit k of byte j. */
  memset (bm, 0, sizeof bm);
  bit_set (bm, 0);
  bit_set (bm, 9);
  bit_set (bm, 15);
  assert (bm[0] == 0x01 && bm[1] == 0x82);
  assert (bit_test (bm, 9) && !bit_test (bm, 10));

  /* Names. */
  assert (addcow_name_is_uri ("nbd+unix:///?socket=/tmp/s"));
  assert (addcow_name_is_uri ("nbd://host:10809/exp"));
  assert (!addcow_name_is_uri ("nbd.img"));
  assert (!addcow_name_is_uri ("/abs/base.img"));
  {
    char *s = addcow_resolve_name ("/a/b/x.add-cow", "base.img");
    assert (strcmp (s, "/a/b/base.img") == 0);
    free (s);
    s = addcow_resolve_name ("x.add-cow", "base.img");
    assert (strcmp (s, "./base.img") == 0);
    free (s);
    s = addcow_resolve_name ("/x.add-cow", "sub/base.img");
    assert (strcmp (s, "/sub/base.img") == 0);
    free (s);
    s = addcow_resolve_name ("/a/x.add-cow", "/other/base.img");
    assert (strcmp (s, "/other/base.img") == 0);
    free (s);
    s = addcow_resolve_name ("/a/x.add-cow", "nbd+unix:///?socket=s");
    assert (strcmp (s, "nbd+unix:///?socket=s") == 0);
    free (s);
    s = addcow_relative_name ("/tmp/x.add-cow", "/tmp/base.img");
    assert (strcmp (s, "base.img") == 0);
    free (s);
    s = addcow_relative_name ("/tmp/x.add-cow", "/base.img");
    assert (strcmp (s, "/base.img") == 0);
    free (s);
    s = addcow_relative_name ("/tmp/x.add-cow", "/usr/../tmp/base.img");
    assert (strcmp (s, "base.img") == 0);
    free (s);
  }

  printf ("test-addcow-bitmap: all passed\n");
  return 0;
}
