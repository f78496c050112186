/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the bitmap geometry and scanning helpers. */

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
  uint64_t i, j, n;
  bool v;

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

  /* Runs against a naive implementation on pseudo-random bitmaps. */
  srand (1);
  for (i = 0; i < 2000; ++i) {
    uint64_t start, end, len, k;
    int density = rand () % 4;
    for (j = 0; j < sizeof bm; ++j)
      bm[j] = density == 0 ? 0 : density == 1 ? 0xff : (uint8_t) rand ();
    if (density == 3)
      for (j = 0; j < sizeof bm; j += 3)
        bm[j] = 0xff;
    start = rand () % (sizeof bm * 8);
    end = start + 1 + rand () % (sizeof bm * 8 - start);
    len = addcow_bitmap_run (bm, start, end, &v);
    assert (len >= 1 && start + len <= end);
    assert (v == bit_test (bm, start));
    for (k = start; k < start + len; ++k)
      assert (bit_test (bm, k) == v);
    if (start + len < end)
      assert (bit_test (bm, start + len) != v);

    n = rand () % (sizeof bm * 8 + 1);
    {
      uint64_t c = 0;
      for (k = 0; k < n; ++k)
        c += bit_test (bm, k);
      assert (addcow_bitmap_count (bm, n) == c);
    }
    {
      uint64_t first = UINT64_MAX;
      for (k = n; k < sizeof bm * 8; ++k)
        if (bit_test (bm, k)) {
          first = k;
          break;
        }
      assert (addcow_bitmap_first_set_from (bm, sizeof bm, n) == first);
    }
  }

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
