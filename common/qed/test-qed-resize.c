/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of qed_resize and qed_make_empty: growing changes only
 * image_size (within the L1 table's reach), shrinking needs the flag
 * and stops at data, a larger backing file refuses a grow, and an
 * emptied image reads its backing file, passes the check and is cut
 * back to header + L1.
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
#include <sys/stat.h>
#include <unistd.h>

#include "full-io.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"
#include "qed-resize.h"

#define MiB (UINT64_C (1) << 20)
#define CS 4096

static unsigned nr_progress;
static uint64_t last_done, last_total;

static void
record_progress (void *opaque, uint64_t done, uint64_t total)
{
  assert (done >= last_done || nr_progress == 0);
  assert (done <= total);
  nr_progress++;
  last_done = done;
  last_total = total;
}

static char dir[] = "/tmp/test-qed-resize.XXXXXX";

/* The test runs in its own directory: names are relative to it. */
static struct qed_image *
open_locked (const char *name)
{
  struct qed_open_options o = { .readonly = false, .lock = true };
  struct qed_image *img = qed_open (name, &o);
  assert (img != NULL);
  return img;
}

static void
check_clean (struct qed_image *img)
{
  struct qed_check_result res;
  assert (qed_check (img, false, &res, NULL, NULL) == 0);
  assert (res.corruptions == 0 && res.leaks == 0);
}

static void
test_resize (void)
{
  struct qed_create_options c = { .size = 4 * MiB, .cluster_size = CS,
                                  .table_size = 1 };
  struct qed_image *img;
  char buf[CS];
  uint64_t found;

  assert (qed_create ("a.qed", &c) == 0);
  img = open_locked ("a.qed");
  memset (buf, 0x5a, sizeof buf);
  assert (qed_pwrite (img, buf, sizeof buf, 3 * MiB, false) == 0);
  assert (qed_flush (img) == 0);

  /* Grow: only the size changes; the new area reads zeroes. */
  assert (qed_resize (img, 6 * MiB, false) == 0);
  assert (img->header.image_size == 6 * MiB && img->dev.size == 6 * MiB);
  assert (qed_close (img) == 0);
  img = open_locked ("a.qed");
  assert (img->header.image_size == 6 * MiB);
  assert (qed_pread (img, buf, sizeof buf, 5 * MiB) == 0);
  assert (buf[0] == 0 && buf[CS - 1] == 0);
  check_clean (img);

  /* Beyond the L1 table's reach (4 KiB clusters, 1-cluster tables:
   * 512 * 512 * 4 KiB = 1 GiB).
   */
  assert (qed_resize (img, 1024 * MiB + 512, false) == -1);
  assert (errno == EFBIG);
  assert (qed_resize (img, 1024 * MiB, false) == 0);
  assert (qed_resize (img, 1000, false) == -1 && errno == EINVAL);

  /* Shrink: needs the flag, stops at data. */
  assert (qed_resize (img, 2 * MiB, false) == -1 && errno == EINVAL);
  assert (qed_first_data_from (img, 2 * MiB, &found) == 0);
  assert (found == 3 * MiB);
  assert (qed_first_data_from (img, 3 * MiB + 512, &found) == 0);
  assert (found == 3 * MiB + 512);
  assert (qed_resize (img, 2 * MiB, true) == -1 && errno == ENOTEMPTY);
  assert (qed_resize (img, 3 * MiB + 512, true) == -1);
  assert (img->header.image_size == 1024 * MiB);
  assert (qed_resize (img, 3 * MiB + CS, true) == 0);
  assert (qed_close (img) == 0);
  img = open_locked ("a.qed");
  assert (img->header.image_size == 3 * MiB + CS);
  assert (qed_pread (img, buf, sizeof buf, 3 * MiB) == 0);
  assert ((unsigned char) buf[0] == 0x5a);
  check_clean (img);
  qed_close (img);
}

/* A shrink's scan past the new end reports rising progress, ending at
 * the whole area.  Zero clusters (no data: the shrink goes on) every
 * 64 KiB make thousands of mappings; they need a backing file, else
 * zeroing an unallocated cluster changes nothing.
 */
static void
test_shrink_progress (void)
{
  struct qed_create_options c = { .size = 64 * MiB, .cluster_size = CS,
                                  .table_size = 1, .backing = "p.raw",
                                  .backing_format = "raw" };
  struct qed_image *img;
  uint64_t off;
  int fd;

  fd = open ("p.raw", O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert (fd >= 0 && ftruncate (fd, CS) == 0);
  close (fd);
  assert (qed_create ("p.qed", &c) == 0);
  img = open_locked ("p.qed");
  for (off = MiB; off < 64 * MiB; off += 64 * 1024)
    assert (qed_zero (img, CS, off, false, false, false) == 0);
  assert (qed_flush (img) == 0);
  assert (qed_resize_progress (img, MiB, true, record_progress, NULL) == 0);
  assert (nr_progress > 10);
  assert (last_total == 63 * MiB);
  assert (last_done == last_total);
  assert (img->header.image_size == MiB);
  check_clean (img);
  assert (qed_close (img) == 0);
}

static void
test_backing_and_empty (void)
{
  struct qed_create_options c = { .size = 1 * MiB, .cluster_size = CS,
                                  .backing = "b.raw",
                                  .backing_format = "raw" };
  struct qed_image *img;
  unsigned char *want = malloc (MiB), *got = malloc (MiB);
  struct stat st;
  int fd;
  uint64_t i;

  fd = open ("b.raw", O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert (fd >= 0);
  for (i = 0; i < MiB; ++i)
    want[i] = i * 7 + 1;
  assert (full_pwrite (fd, want, MiB, 0) == 0);
  assert (ftruncate (fd, 2 * MiB) == 0);
  assert (qed_create ("o.qed", &c) == 0);

  /* The backing file (2 MiB) is larger than the image: no grow. */
  img = open_locked ("o.qed");
  assert (qed_resize (img, 2 * MiB, false) == -1 && errno == ENOTSUP);

  /* Write, "commit" by hand, empty: the image reads the backing. */
  memset (want + 8192, 0xee, 3 * CS);
  assert (qed_pwrite (img, want + 8192, 3 * CS, 8192, false) == 0);
  assert (qed_flush (img) == 0);
  assert (full_pwrite (fd, want + 8192, 3 * CS, 8192) == 0);
  assert (fsync (fd) == 0);
  assert (qed_make_empty (img) == 0);
  assert (qed_close (img) == 0);

  img = open_locked ("o.qed");
  assert (qed_pread (img, got, MiB, 0) == 0);
  assert (memcmp (got, want, MiB) == 0);
  check_clean (img);
  assert (fstat (img->fd, &st) == 0);
  assert ((uint64_t) st.st_size == img->header.l1_table_offset
          + img->geom.table_bytes);
  qed_close (img);
  close (fd);
  free (want);
  free (got);
}

int
main (void)
{
  char cmd[300];

  assert (mkdtemp (dir) != NULL);
  assert (chdir (dir) == 0);
  test_resize ();
  test_backing_and_empty ();
  test_shrink_progress ();
  assert (chdir ("/") == 0);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  assert (system (cmd) == 0);
  printf ("test-qed-resize: ok\n");
  return 0;
}
