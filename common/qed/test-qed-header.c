/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of QED header validation on hand-made headers. */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qad-error.h"
#include "qed-header.h"

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static struct qed_header
good (void)
{
  struct qed_header h = {
    .cluster_size = 65536, .table_size = 4, .header_size = 1,
    .features = 0, .l1_table_offset = 65536,
    .image_size = UINT64_C (1) << 30,
  };
  return h;
}

/* Expect validation to fail with a message containing WANT. */
static void
expect_bad (const struct qed_header *h, uint64_t file_size, const char *want)
{
  struct qed_geometry g;

  last_error[0] = '\0';
  if (qed_header_validate ("test.qed", h, file_size, &g) == 0) {
    fprintf (stderr, "FAIL: accepted, expected error with '%s'\n", want);
    exit (EXIT_FAILURE);
  }
  if (strstr (last_error, want) == NULL ||
      strstr (last_error, "test.qed") == NULL) {
    fprintf (stderr, "FAIL: error '%s' lacks '%s' or the file name\n",
             last_error, want);
    exit (EXIT_FAILURE);
  }
}

int
main (void)
{
  const uint64_t fsize = 5 * 65536;
  struct qed_header h;
  struct qed_geometry g;
  unsigned char buf[QED_HEADER_BYTES];
  char fbuf[128];

  qad_set_error_handler (capture);

  h = good ();
  assert (qed_header_validate ("test.qed", &h, fsize, &g) == 0);
  assert (g.cluster_bits == 16 && g.table_entries == 32768);
  assert (g.table_bits == 15 && g.header_bytes == 65536);
  assert (g.max_image_size == UINT64_C (64) << 40);   /* 64 TiB */

  /* Encode/decode round trip. */
  h.features = QED_F_BACKING_FILE;
  h.backing_name_offset = 64;
  h.backing_name_size = 9;
  h.autoclear_features = 0x80;
  qed_header_encode (&h, buf);
  assert (memcmp (buf, "QED\0", 4) == 0);
  assert (qed_probe_magic (buf, sizeof buf));
  {
    struct qed_header h2;
    qed_header_decode (buf, &h2);
    /* Field by field: the struct has padding. */
    assert (h2.cluster_size == h.cluster_size);
    assert (h2.table_size == h.table_size);
    assert (h2.header_size == h.header_size);
    assert (h2.features == h.features);
    assert (h2.compat_features == h.compat_features);
    assert (h2.autoclear_features == h.autoclear_features);
    assert (h2.l1_table_offset == h.l1_table_offset);
    assert (h2.image_size == h.image_size);
    assert (h2.backing_name_offset == h.backing_name_offset);
    assert (h2.backing_name_size == h.backing_name_size);
  }
  assert (buf[4] == 0 && buf[5] == 0 && buf[6] == 1);   /* little-endian */

  /* cluster_size */
  h = good (); h.cluster_size = 0;
  expect_bad (&h, fsize, "cluster_size=0");
  h = good (); h.cluster_size = 65537;
  expect_bad (&h, fsize, "cluster_size=65537");
  h = good (); h.cluster_size = 2048;
  expect_bad (&h, fsize, "cluster_size=2048");
  h = good (); h.cluster_size = UINT32_C (1) << 27;
  expect_bad (&h, fsize, "cluster_size=134217728");
  h = good (); h.cluster_size = UINT32_C (1) << 31;
  expect_bad (&h, fsize, "cluster_size=2147483648");

  /* table_size */
  h = good (); h.table_size = 0;
  expect_bad (&h, fsize, "table_size=0");
  h = good (); h.table_size = 32;
  expect_bad (&h, fsize, "table_size=32");
  h = good (); h.table_size = 3;
  expect_bad (&h, fsize, "table_size=3");

  /* header_size */
  h = good (); h.header_size = 0;
  expect_bad (&h, fsize, "header_size=0");
  h = good (); h.header_size = UINT32_MAX;
  expect_bad (&h, fsize, "header_size=4294967295");

  /* features */
  h = good (); h.features = 0x8;
  expect_bad (&h, fsize, "features=0x8");
  assert (errno == ENOTSUP);
  h = good (); h.features = UINT64_C (1) << 63 | QED_F_NEED_CHECK;
  expect_bad (&h, fsize, "unknown bits 0x8000000000000000");
  /* Unknown compat and autoclear bits are fine. */
  h = good (); h.compat_features = 0xff; h.autoclear_features = 0xff;
  assert (qed_header_validate ("test.qed", &h, fsize, &g) == 0);

  /* image_size */
  h = good (); h.image_size = 1000;
  expect_bad (&h, fsize, "image_size=1000");
  h = good (); h.image_size = (UINT64_C (64) << 40) + 512;
  expect_bad (&h, fsize, "exceeds the maximum");
  h = good (); h.image_size = UINT64_C (64) << 40;
  assert (qed_header_validate ("test.qed", &h, fsize, &g) == 0);

  /* l1_table_offset */
  h = good (); h.l1_table_offset = 65536 + 512;
  expect_bad (&h, fsize, "l1_table_offset=66048");
  h = good (); h.l1_table_offset = 0;
  expect_bad (&h, fsize, "l1_table_offset=0");
  h = good (); h.l1_table_offset = 4 * 65536;     /* table runs past EOF */
  expect_bad (&h, fsize, "l1_table_offset=262144");
  h = good (); h.l1_table_offset = UINT64_MAX & ~UINT64_C (0xffff);
  expect_bad (&h, fsize, "l1_table_offset=");

  /* backing file name */
  h = good (); h.features = QED_F_BACKING_FILE;
  h.backing_name_offset = 65530; h.backing_name_size = 10;
  expect_bad (&h, fsize, "backing_filename_offset=65530");
  h.backing_name_offset = 64; h.backing_name_size = 0;
  expect_bad (&h, fsize, "backing_filename_size=0");
  h.backing_name_offset = 10; h.backing_name_size = 4;
  expect_bad (&h, fsize, "backing_filename_offset=10");
  h.backing_name_offset = UINT32_MAX; h.backing_name_size = UINT32_MAX;
  expect_bad (&h, fsize, "backing_filename_offset=4294967295");
  h.backing_name_offset = 64; h.backing_name_size = 100;
  assert (qed_header_validate ("test.qed", &h, fsize, &g) == 0);

  /* Maximum sizes never wrap. */
  assert (qed_max_image_size (4096, 1) == UINT64_C (1) << 30);
  assert (qed_max_image_size (1 << 20, 1) == UINT64_C (1) << 54);
  assert (qed_max_image_size (1 << 22, 16) == UINT64_MAX);   /* 2^88 */
  assert (qed_max_image_size (1 << 26, 16) == UINT64_MAX);
  assert (qed_max_image_size (1 << 21, 4) == UINT64_C (1) << 61);
  /* A 64 MiB cluster, 16-cluster-table image with a huge size is valid. */
  h = good (); h.cluster_size = 1 << 26; h.table_size = 16;
  h.l1_table_offset = 1 << 26; h.image_size = UINT64_C (1) << 62;
  assert (qed_header_validate ("test.qed", &h, UINT64_C (17) << 26, &g) == 0);
  assert (g.max_image_size == UINT64_MAX);

  assert (strcmp (qed_features_string (0, fbuf, sizeof fbuf), "none") == 0);
  assert (strcmp (qed_features_string (0x7 | 0x40, fbuf, sizeof fbuf),
                  "backing_file|need_check|backing_format_no_probe|0x40")
          == 0);
  return 0;
}
