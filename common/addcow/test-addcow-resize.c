/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of addcow_resize and addcow_make_empty: the bitmap follows
 * the image's size, shrinking stops at a cluster the image holds, a
 * larger backing file refuses a grow, ALL_ALLOCATED grows with ones,
 * and emptying clears every bit (and ALL_ALLOCATED).
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow-file.h"
#include "addcow-resize.h"
#include "addcow-store.h"
#include "addcow.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "qad-error.h"

#define CS 4096
#define MiB (UINT64_C (1) << 20)

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static char dir[] = "/tmp/test-addcow-resizeXXXXXX";
static char side[256], image[256];

/* Open the pair, load it.  HDR must outlive P. */
static void
open_pair (struct addcow_pair *p, struct addcow_header *hdr)
{
  assert (addcow_pair_open (p, hdr, side) == 0);
  assert (strcmp (p->image, image) == 0);
}

static void
close_pair (struct addcow_pair *p, struct addcow_header *hdr)
{
  addcow_pair_close (p);
}

static uint64_t
size_of (const char *path)
{
  struct stat st;
  assert (stat (path, &st) == 0);
  return st.st_size;
}

int
main (void)
{
  struct addcow_header h, hdr;
  struct addcow_pair p;
  uint8_t byte;
  struct addcow_store_io io;
  int fd;
  char cmd[300];

  qad_set_error_handler (capture);
  assert (mkdtemp (dir) != NULL);
  snprintf (side, sizeof side, "%s/d.add-cow", dir);
  snprintf (image, sizeof image, "%s/d.raw", dir);
  fd = open (image, O_RDWR | O_CREAT, 0644);
  assert (fd >= 0 && ftruncate (fd, MiB) == 0);
  close (fd);
  assert (addcow_header_init (&h, 12, "d.raw", "raw", "b.raw", "raw") == 0);
  assert (addcow_create_file (side, &h, true, MiB) == 0);

  /* Cluster 100 (offset 409600) is held by the image. */
  fd = open (side, O_RDWR);
  byte = 1 << (100 % 8);
  assert (full_pwrite (fd, &byte, 1, h.header_size + 100 / 8) == 0);
  close (fd);

  /* Grow: refused over a larger backing file, else both grow. */
  open_pair (&p, &hdr);
  assert (addcow_resize (&p, 2 * MiB, false, 2 * MiB) == -1);
  assert (errno == ENOTSUP && strstr (last_error, "larger"));
  assert (addcow_resize (&p, 2 * MiB, false, UINT64_MAX) == -1);
  assert (addcow_resize (&p, 64 * MiB, false, MiB) == 0);
  assert (size_of (image) == 64 * MiB);
  assert (size_of (side) == h.header_size + addcow_bitmap_size (64 * MiB, 12));
  close_pair (&p, &hdr);

  /* Shrink: needs the flag, stops at cluster 100. */
  open_pair (&p, &hdr);
  assert (bits_count (p.bitmap, 0, 64 * MiB / CS) == 1);
  assert (addcow_resize (&p, 2 * CS, false, 0) == -1 && errno == EINVAL);
  assert (addcow_resize (&p, 2 * CS, true, 0) == -1 && errno == ENOTEMPTY);
  assert (strstr (last_error, "409600"));
  assert (addcow_first_allocated_from (&p, 409600 + 5) == 409600 + 5);
  assert (addcow_resize (&p, 101 * CS, true, 0) == 0);
  assert (size_of (image) == 101 * CS);
  close_pair (&p, &hdr);

  /* Empty: every bit 0, reopens cleanly. */
  open_pair (&p, &hdr);
  assert (addcow_make_empty (&p) == 0);
  close_pair (&p, &hdr);
  open_pair (&p, &hdr);
  assert (!p.fresh && bits_count (p.bitmap, 0, 101) == 0);
  close_pair (&p, &hdr);

  /* ALL_ALLOCATED: grows (the backing file no longer matters) with
   * ones; empty sets every bit before clearing the flag.
   */
  fd = open (side, O_RDWR);
  addcow_store_io_fd (&io, &fd);
  assert (addcow_write_compat_features (&io, side,
                                        ADDCOW_COMPAT_ALL_ALLOCATED) == 0);
  close (fd);
  open_pair (&p, &hdr);
  assert (p.all_allocated);
  assert (addcow_resize (&p, 2 * CS, true, 0) == -1 && errno == ENOTEMPTY);
  assert (addcow_resize (&p, MiB, false, 8 * MiB) == 0);
  fd = open (side, O_RDONLY);
  assert (full_pread (fd, &byte, 1, h.header_size + 200 / 8) == 0);
  assert (byte == 0xff);
  close (fd);
  assert (addcow_make_empty (&p) == 0);
  close_pair (&p, &hdr);
  open_pair (&p, &hdr);
  assert (!p.all_allocated);
  assert (bits_count (p.bitmap, 0, MiB / CS) == 0);
  close_pair (&p, &hdr);

  addcow_header_free (&h);
  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  assert (system (cmd) == 0);
  printf ("test-addcow-resize: ok\n");
  return 0;
}
