/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the add-cow header parser and serializer: a valid
 * header round-trips, and each kind of corruption is refused with a
 * message naming the field and the value.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addcow.h"
#include "byte-swapping.h"
#include "qad-error.h"

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static uint8_t buf[ADDCOW_MAX_HEADER_SIZE];

/* A valid header in buf: 64K clusters, backing base.img (qed),
 * image disk.raw.  Returns HEADER_SIZE.
 */
static uint32_t
make_valid (uint32_t cluster_bits)
{
  struct addcow_header h;

  assert (addcow_header_init (&h, cluster_bits, "disk.raw", "raw",
                              "base.img", "qed") == 0);
  memset (buf, 0xaa, sizeof buf);
  assert (addcow_build_header (&h, buf, "t") == 0);
  addcow_header_free (&h);
  return addcow_header_size_for (cluster_bits);
}

/* Parsing buf must fail with a message containing every one of the
 * NULL-terminated strings.
 */
static void
expect_bad (size_t len, const char *what, ...)
{
  struct addcow_header h;
  const char *s;
  va_list ap;

  last_error[0] = '\0';
  if (addcow_parse_header (buf, len, "bad.add-cow", &h) != -1) {
    fprintf (stderr, "FAIL: %s: corrupt header accepted\n", what);
    exit (EXIT_FAILURE);
  }
  assert (h.backing_file == NULL && h.image_file == NULL);
  if (strstr (last_error, "bad.add-cow") == NULL) {
    fprintf (stderr, "FAIL: %s: message lacks the file name: %s\n",
             what, last_error);
    exit (EXIT_FAILURE);
  }
  va_start (ap, what);
  while ((s = va_arg (ap, const char *)) != NULL) {
    if (strstr (last_error, s) == NULL) {
      fprintf (stderr, "FAIL: %s: message lacks \"%s\": %s\n",
               what, s, last_error);
      exit (EXIT_FAILURE);
    }
  }
  va_end (ap);
  printf ("ok: %s: %s\n", what, last_error);
}

int
main (void)
{
  struct addcow_header h;
  uint32_t hs;
  unsigned bits;

  qad_set_error_handler (capture);

  /* Temporary sockets: nbdkit -U - and libnbd socket activation. */
  assert (addcow_uri_is_temporary ("nbd+unix://?socket=/tmp/nbdkitdEKIwQ/socket"));
  assert (addcow_uri_is_temporary ("nbd+unix:///x?tls=off&socket=/tmp/libnbdAb12Cd/sock"));
  assert (addcow_uri_is_temporary ("nbd+unix:///?socket=/var/tmp/nbdkit123456/s&tls=off"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket=/tmp/sock"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket=/run/nbdkit/socket"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket=/tmp/nbdkit1234567/socket"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket=/tmp/nbdkit12345_/socket"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket=nbdkit123456"));
  assert (!addcow_uri_is_temporary ("nbd://host/nbdkit123456/x"));
  assert (!addcow_uri_is_temporary ("/tmp/nbdkit123456/socket"));
  assert (!addcow_uri_is_temporary ("nbd+unix:///?socket="));

  /* Round trip at every cluster size. */
  for (bits = ADDCOW_MIN_CLUSTER_BITS; bits <= ADDCOW_MAX_CLUSTER_BITS;
       ++bits) {
    hs = make_valid (bits);
    assert (hs == (bits <= 12 ? 4096 : 1u << bits));
    assert (addcow_parse_header (buf, hs, "t", &h) == 0);
    assert (h.cluster_bits == bits);
    assert (h.header_size == hs);
    assert (strcmp (h.backing_file, "base.img") == 0);
    assert (strcmp (h.image_file, "disk.raw") == 0);
    assert (strcmp (h.backing_format, "qed") == 0);
    assert (strcmp (h.image_format, "raw") == 0);
    assert (h.features == 0 && h.compat_features == 0);
    addcow_header_free (&h);
  }

  /* The exact bytes, as the spec describes them. */
  hs = make_valid (16);
  assert (memcmp (buf, "ACOW", 4) == 0);
  assert (load_le32 (buf + 4) == 76);
  assert (load_le32 (buf + 8) == 8);
  assert (load_le32 (buf + 12) == 84);
  assert (load_le32 (buf + 16) == 8);
  assert (load_le32 (buf + 20) == 16);
  assert (load_le32 (buf + 40) == 65536);
  assert (memcmp (buf + 44, "qed\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0);
  assert (memcmp (buf + 60, "raw\0\0\0\0\0\0\0\0\0\0\0\0\0", 16) == 0);
  assert (memcmp (buf + 76, "base.imgdisk.raw", 16) == 0);
  assert (buf[92] == 0 && buf[hs - 1] == 0);

  /* Unknown compatible bits and ALL_ALLOCATED are accepted. */
  store_le64 (buf + 32, ADDCOW_COMPAT_ALL_ALLOCATED | (UINT64_C (1) << 40));
  assert (addcow_parse_header (buf, hs, "t", &h) == 0);
  assert (h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
  addcow_header_free (&h);

  /* No backing file. */
  assert (addcow_header_init (&h, 12, "disk.raw", "raw", NULL, NULL) == 0);
  assert (addcow_build_header (&h, buf, "t") == 0);
  addcow_header_free (&h);
  assert (addcow_parse_header (buf, 4096, "t", &h) == 0);
  assert (h.backing_file == NULL && h.backing_format[0] == '\0');
  assert (load_le32 (buf + 4) == 0 && load_le32 (buf + 12) == 76);
  addcow_header_free (&h);

  /* Names written elsewhere in the header by another writer. */
  hs = make_valid (12);
  memset (buf + 76, 0, 16);
  memcpy (buf + 4000, "disk.raw", 8);
  memcpy (buf + 2000, "base.img", 8);
  store_le32 (buf + 4, 2000);
  store_le32 (buf + 12, 4000);
  assert (addcow_parse_header (buf, hs, "t", &h) == 0);
  assert (strcmp (h.image_file, "disk.raw") == 0);
  addcow_header_free (&h);

  /* A name may end exactly at HEADER_SIZE, a 1-byte one start at
   * HEADER_SIZE - 1 (spec section 4).
   */
  hs = make_valid (12);
  memset (buf + 76, 0, 16);
  memcpy (buf + hs - 8, "disk.raw", 8);
  buf[hs - 9] = 'b';
  store_le32 (buf + 12, hs - 8);
  store_le32 (buf + 4, hs - 9);
  store_le32 (buf + 8, 1);
  assert (addcow_parse_header (buf, hs, "t", &h) == 0);
  assert (strcmp (h.image_file, "disk.raw") == 0);
  assert (strcmp (h.backing_file, "b") == 0);
  addcow_header_free (&h);

  /* ---- corruptions ---- */
  hs = make_valid (16);
  expect_bad (75, "truncated fixed header", "truncated", "75", NULL);
  expect_bad (hs - 1, "truncated header area", "truncated", "65536", NULL);

  make_valid (16); buf[3] = 'X';
  expect_bad (hs, "bad magic", "magic", "58", NULL);

  make_valid (16); store_le64 (buf + 24, 4);
  expect_bad (hs, "unknown feature bit", "feature", "0x4", NULL);

  /* BACKING_SUPPLIED (bit 0): accepted with a label and format raw;
   * refused with format qed or without a label.
   */
  make_valid (16); store_le64 (buf + 24, ADDCOW_FEATURE_BACKING_SUPPLIED);
  expect_bad (hs, "supplied backing not raw", "BACKING_SUPPLIED", "qed",
              NULL);
  memcpy (buf + 44, "raw", 3);
  assert (addcow_parse_header (buf, hs, "t", &h) == 0);
  assert (addcow_backing_supplied (&h));
  assert (strcmp (h.backing_file, "base.img") == 0);
  addcow_header_free (&h);
  assert (addcow_header_init (&h, 16, "disk.raw", "raw", NULL, NULL) == 0);
  h.features = ADDCOW_FEATURE_BACKING_SUPPLIED;
  assert (addcow_validate_header (&h, "t") == -1);
  assert (strstr (last_error, "no label") != NULL);
  addcow_header_free (&h);
  make_valid (16); store_le64 (buf + 24, 3);
  expect_bad (hs, "unknown feature bit beside a known one", "feature",
              "0x2", NULL);

  make_valid (16); store_le32 (buf + 20, 11);
  expect_bad (hs, "cluster_bits too small", "cluster_bits", "11", NULL);
  make_valid (16); store_le32 (buf + 20, 22);
  expect_bad (hs, "cluster_bits too large", "cluster_bits", "22", NULL);
  make_valid (16); store_le32 (buf + 20, 0xffffffff);
  expect_bad (hs, "cluster_bits huge", "cluster_bits", "4294967295", NULL);

  make_valid (16); store_le32 (buf + 40, 4096);
  expect_bad (hs, "HEADER_SIZE mismatch", "HEADER_SIZE", "4096", NULL);
  make_valid (12); store_le32 (buf + 40, 8192);
  expect_bad (8192, "HEADER_SIZE too big", "HEADER_SIZE", "8192", NULL);

  make_valid (16); store_le32 (buf + 12, 65530);
  expect_bad (hs, "image name past HEADER_SIZE", "image file name",
              "65530", NULL);
  make_valid (16); store_le32 (buf + 8, 0xfffffff0);
  expect_bad (hs, "backing name size overflows", "backing file name",
              "4294967280", NULL);
  make_valid (16); store_le32 (buf + 4, 65535);
  expect_bad (hs, "backing name offset HEADER_SIZE-1", "backing file name",
              "65535", NULL);
  make_valid (16); store_le32 (buf + 4, 40);
  expect_bad (hs, "name inside fixed header", "offset 40", NULL);
  make_valid (16); store_le32 (buf + 12, 0); store_le32 (buf + 16, 0);
  expect_bad (hs, "no image name", "image file name", NULL);
  make_valid (16); store_le32 (buf + 8, 0);
  expect_bad (hs, "backing offset without size", "backing file name size",
              NULL);
  make_valid (16); store_le32 (buf + 4, 0);
  expect_bad (hs, "backing size without offset", "backing file name offset",
              NULL);
  make_valid (16); store_le32 (buf + 12, 80);
  expect_bad (hs, "overlapping names", "overlaps", NULL);

  make_valid (16); memcpy (buf + 84, "base.img", 8);
  expect_bad (hs, "image and backing names equal", "must differ",
              "base.img", NULL);

  make_valid (16); memset (buf + 44, 0, 16);
  expect_bad (hs, "missing backing format", "backing file format", NULL);
  make_valid (16); memset (buf + 60, 0, 16);
  expect_bad (hs, "missing image format", "image file format", NULL);
  make_valid (16); buf[50] = 'x';
  expect_bad (hs, "format not zero-padded", "zero-padded", NULL);
  make_valid (16); buf[61] = 0x07;
  expect_bad (hs, "format not printable", "0x07", NULL);
  assert (addcow_header_init (&h, 12, "disk.raw", "raw", NULL, NULL) == 0);
  assert (addcow_build_header (&h, buf, "t") == 0);
  addcow_header_free (&h);
  memcpy (buf + 44, "raw", 3);
  expect_bad (4096, "backing format without backing file",
              "no backing file", NULL);

  /* Only the defined format values are valid. */
  make_valid (16); memcpy (buf + 44, "qcow2", 5);
  expect_bad (hs, "undefined backing format", "backing file format",
              "qcow2", "not defined", NULL);
  make_valid (16); memcpy (buf + 60, "qed", 3);
  expect_bad (hs, "undefined image format", "image file format", "qed",
              "not defined", NULL);

  make_valid (16); buf[78] = 0;
  expect_bad (hs, "NUL inside a name", "NUL", NULL);
  make_valid (16); buf[5000] = 1;
  expect_bad (hs, "reserved byte set", "5000", "0x01", NULL);

  /* The serializer refuses what the parser would refuse. */
  assert (addcow_header_init (&h, 16, "same", "raw", "same", "raw") == 0);
  assert (addcow_build_header (&h, buf, "t") == -1);
  addcow_header_free (&h);
  assert (addcow_header_init (&h, 16, "disk.raw", "raw", "b", NULL) == 0);
  assert (addcow_build_header (&h, buf, "t") == -1);
  addcow_header_free (&h);
  assert (addcow_header_init (&h, 16, "disk.raw", "this-is-too-long-x",
                              NULL, NULL) == -1);
  {
    char *longname = malloc (5000);
    memset (longname, 'a', 4999);
    longname[4999] = '\0';
    assert (addcow_header_init (&h, 12, longname, "raw", NULL, NULL) == 0);
    assert (addcow_build_header (&h, buf, "t") == -1);
    assert (strstr (last_error, "too long") != NULL);
    addcow_header_free (&h);
    free (longname);
  }

  printf ("test-addcow-header: all passed\n");
  return 0;
}
