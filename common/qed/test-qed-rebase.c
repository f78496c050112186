/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of qed-rebase.c: where a new backing name may go, the
 * header switch (name, format bits, removal) and the safe-rebase copy:
 * after rebasing onto a different backing file, and after removing
 * the backing file, the image must read exactly what it read before,
 * copying only the unallocated clusters that differ.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "full-io.h"
#include "qad-error.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"
#include "qed-rebase.h"

#define CS 4096
#define NCLUSTERS 64
#define SIZE (NCLUSTERS * CS - 512)     /* a partial last cluster */
#define BASE2_SIZE (40 * CS)            /* shorter: zeroes past its end */

static char dir[] = "/tmp/test-qed-rebase.XXXXXX";

static void
write_file (const char *name, const unsigned char *data, size_t len)
{
  int fd = open (name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert (fd >= 0);
  assert (full_pwrite (fd, data, len, 0) == 0);
  assert (close (fd) == 0);
}

static struct qed_image *
open_img (bool readonly)
{
  struct qed_open_options o = { .readonly = readonly };
  struct qed_image *img = qed_open ("img.qed", &o);
  assert (img != NULL);
  return img;
}

static void
verify (const unsigned char *model)
{
  struct qed_image *img = open_img (true);
  unsigned char *buf = malloc (SIZE);
  struct qed_check_result res;

  assert (qed_pread (img, buf, SIZE, 0) == 0);
  assert (memcmp (buf, model, SIZE) == 0);
  assert (qed_check (img, false, &res, NULL, NULL) == 0);
  assert (res.corruptions == 0 && res.leaks == 0);
  free (buf);
  qed_close (img);
}

static void
test_choose_offset (void)
{
  struct qed_header h = { .features = 0 };
  struct qed_geometry g = { .header_bytes = 4096 };
  uint32_t off;

  /* No name yet: right after the fixed header. */
  assert (qed_choose_backing_name_offset ("t", &h, &g, 100, &off) == 0);
  assert (off == QED_HEADER_BYTES);
  /* A name at 64: the new one goes after it, never over it. */
  h.features = QED_F_BACKING_FILE;
  h.backing_name_offset = 64;
  h.backing_name_size = 10;
  assert (qed_choose_backing_name_offset ("t", &h, &g, 5, &off) == 0);
  assert (off == 74);
  /* A name further on: 64 is free if the new name ends before it. */
  h.backing_name_offset = 1000;
  assert (qed_choose_backing_name_offset ("t", &h, &g, 900, &off) == 0);
  assert (off == 64);
  assert (qed_choose_backing_name_offset ("t", &h, &g, 937, &off) == 0);
  assert (off == 1010);
  /* Both cannot fit: refused, not rewritten in place. */
  h.backing_name_offset = 64;
  h.backing_name_size = 2100;
  assert (qed_choose_backing_name_offset ("t", &h, &g, 2000, &off) == -1);
  assert (errno == ENOSPC);
  assert (qed_choose_backing_name_offset ("t", &h, &g, 1932, &off) == 0);
  assert (off == 2164);
}

int
main (void)
{
  unsigned char *base1 = malloc (SIZE), *base2 = calloc (1, SIZE);
  unsigned char *model = malloc (SIZE), data[CS];
  struct qed_create_options co = {
    .size = SIZE, .cluster_size = CS, .backing = "base1.raw",
    .backing_format = "raw",
  };
  struct qed_image *img;
  char *name;
  uint64_t copied;
  size_t i, expect = 0;

  /* Relative names, as an image records them. */
  assert (mkdtemp (dir) != NULL && chdir (dir) == 0);
  test_choose_offset ();

  /* base2 equals base1 in even clusters, differs in odd ones, and is
   * shorter (where base1 is zero past its end, they agree).
   */
  for (i = 0; i < SIZE; ++i)
    base1[i] = (i / CS) % 5 == 4 ? 0 : 1 + (i * 7) % 251;
  memcpy (base2, base1, BASE2_SIZE);
  for (i = 1; i < BASE2_SIZE / CS; i += 2)
    memset (base2 + i * CS, 0x5a, CS);
  write_file ("base1.raw", base1, SIZE);
  write_file ("base2.raw", base2, BASE2_SIZE);
  assert (qed_create ("img.qed", &co) == 0);

  /* Allocate every third cluster: those must not be copied. */
  memcpy (model, base1, SIZE);
  img = open_img (false);
  for (i = 0; i < NCLUSTERS; i += 3) {
    size_t n = i == NCLUSTERS - 1 ? CS - 512 : CS;
    memset (data, 0xc0 + i, n);
    assert (qed_pwrite (img, data, n, i * CS, false) == 0);
    memcpy (model + i * CS, data, n);
  }
  for (i = 0; i < NCLUSTERS; ++i) {
    size_t n = i == NCLUSTERS - 1 ? CS - 512 : CS;
    uint64_t off = i * CS;
    unsigned char nb[CS] = { 0 };
    if (off < BASE2_SIZE)
      memcpy (nb, base2 + off, n);
    if (i % 3 != 0 && memcmp (base1 + off, nb, n) != 0)
      expect += n;
  }
  assert (expect > 0);

  /* Safe rebase onto base2. */
  {
    struct qad_blockdev *nb = qed_open_backing ("base2.raw", "raw", false);
    assert (nb != NULL);
    assert (qed_rebase_copy (img, nb, NULL, NULL, &copied) == 0);
    assert (copied == expect);
    qad_blockdev_close (nb);
  }
  /* A bad format is refused and changes nothing. */
  assert (qed_header_set_backing (img, "base2.raw", "vmdk") == -1);
  assert (qed_header_set_backing (img, "base2.raw", "raw") == 0);
  assert (qed_close (img) == 0);
  verify (model);
  img = open_img (true);
  assert (qed_read_backing_name (img, &name) == 0);
  assert (strcmp (name, "base2.raw") == 0);
  assert (img->header.features & QED_F_BACKING_FORMAT_NO_PROBE);
  assert (strcmp (qed_recorded_backing_format (&img->header), "raw") == 0);
  assert (img->header.backing_name_offset == QED_HEADER_BYTES +
          strlen ("base1.raw"));
  free (name);
  qed_close (img);

  /* Unsafe switch back to base1 with a probed format: the guest now
   * reads base1 where nothing is allocated (the copies stay).
   */
  img = open_img (false);
  assert (qed_header_set_backing (img, "base1.raw", NULL) == 0);
  assert (qed_close (img) == 0);
  img = open_img (true);
  assert (!(img->header.features & QED_F_BACKING_FORMAT_NO_PROBE));
  assert (qed_recorded_backing_format (&img->header) == NULL);
  assert (img->header.backing_name_offset == QED_HEADER_BYTES);
  qed_close (img);
  verify (model);

  /* Safe removal of the backing file: everything base1 gave is
   * copied, and the image then stands alone.
   */
  img = open_img (false);
  assert (qed_rebase_copy (img, NULL, NULL, NULL, &copied) == 0);
  assert (copied > 0);
  assert (qed_header_set_backing (img, NULL, "raw") == -1);
  assert (qed_header_set_backing (img, "", NULL) == 0);
  assert (qed_close (img) == 0);
  img = open_img (true);
  assert (!(img->header.features & QED_F_BACKING_FILE));
  assert (img->backing == NULL);
  qed_close (img);
  verify (model);
  /* The image no longer needs base1. */
  assert (unlink ("base1.raw") == 0);
  verify (model);

  unlink ("base2.raw");
  unlink ("img.qed");
  assert (chdir ("/") == 0);
  rmdir (dir);
  free (base1);
  free (base2);
  free (model);
  return 0;
}
