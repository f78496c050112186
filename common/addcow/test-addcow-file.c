/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the sidecar file operations: create (fresh and with
 * a bitmap), read back, load the bitmap for a disk size, refuse a
 * truncated bitmap or bits past the disk end, never replace an
 * existing file, lock.
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-file.h"
#include "full-io.h"
#include "qad-error.h"

static char last_error[1024];

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

static uint64_t
file_size (const char *path)
{
  struct stat st;
  assert (stat (path, &st) == 0);
  return st.st_size;
}

int
main (void)
{
  char dir[] = "/tmp/test-addcow-fileXXXXXX";
  char path[256], path2[256];
  struct addcow_header h, h2;
  uint64_t fsz, bmlen;
  uint8_t *bm;
  bool fresh;
  int fd, fd2;
  uint8_t one = 1;

  qad_set_error_handler (capture);
  assert (mkdtemp (dir) != NULL);
  snprintf (path, sizeof path, "%s/d.add-cow", dir);
  snprintf (path2, sizeof path2, "%s/e.add-cow", dir);

  /* Fresh sidecar: header only. */
  assert (addcow_header_init (&h, 16, "d.raw", "raw", "b.img", "raw") == 0);
  assert (addcow_create_file (path, &h, false, 0) == 0);
  assert (file_size (path) == 65536);
  /* Never replaces. */
  assert (addcow_create_file (path, &h, false, 0) == -1);
  assert (strstr (last_error, "already exists") != NULL);

  fd = open (path, O_RDWR);
  assert (fd >= 0);
  assert (addcow_read_header (fd, path, &h2, &fsz) == 0);
  assert (fsz == 65536 && strcmp (h2.backing_file, "b.img") == 0);
  assert (addcow_load_bitmap (fd, path, &h2, fsz, 10 << 20, &bm, &bmlen,
                              &fresh) == 0);
  assert (fresh && bmlen == 65536 && bm[0] == 0);
  free (bm);

  /* Locking: a second open file description is refused. */
  assert (addcow_lock_fd (fd, path) == 0);
  fd2 = open (path, O_RDWR);
  assert (addcow_lock_fd (fd2, path) == -1);
  assert (strstr (last_error, "in use") != NULL);
  close (fd2);

  /* Extend it as the filter does, set a bit, reload. */
  assert (ftruncate (fd, 65536 + bmlen) == 0);
  assert (full_pwrite (fd, &one, 1, 65536 + 2) == 0);
  assert (addcow_load_bitmap (fd, path, &h2, 65536 + bmlen, 10 << 20,
                              &bm, &bmlen, &fresh) == 0);
  assert (!fresh && bit_test (bm, 16) && !bit_test (bm, 15));
  free (bm);

  /* A disk too small for that bit: refused (image shrank). */
  assert (addcow_load_bitmap (fd, path, &h2, 65536 + bmlen, 16 * 65536,
                              &bm, &bmlen, &fresh) == -1);
  assert (strstr (last_error, "cluster 16") != NULL);
  /* A disk too large for the bitmap: truncated. */
  assert (addcow_load_bitmap (fd, path, &h2, 65536 + 65536,
                              UINT64_C (65536) * 65536 * 8 + 1,
                              &bm, &bmlen, &fresh) == -1);
  assert (strstr (last_error, "truncated") != NULL);
  assert (strstr (last_error, "the image is 34359738369 bytes") != NULL);
  assert (strstr (last_error, "covers at most 34359738368 bytes") != NULL);
  /* Past the bitmap proper, in the slack bytes of a larger file. */
  assert (ftruncate (fd, 65536 + 3 * 65536) == 0);
  assert (full_pwrite (fd, &one, 1, 65536 + 2 * 65536 + 7) == 0);
  assert (addcow_load_bitmap (fd, path, &h2, 65536 + 3 * 65536, 10 << 20,
                              &bm, &bmlen, &fresh) == -1);
  assert (strstr (last_error, "shrank") != NULL);
  assert (strstr (last_error, "the image is 10485760 bytes") != NULL);

  /* Set ALL_ALLOCATED and read it back. */
  h2.compat_features |= ADDCOW_COMPAT_ALL_ALLOCATED;
  assert (addcow_write_header (fd, path, &h2) == 0);
  addcow_header_free (&h2);
  assert (addcow_read_header (fd, path, &h2, &fsz) == 0);
  assert (h2.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
  addcow_header_free (&h2);
  close (fd);

  /* With a bitmap: sized at creation. */
  assert (addcow_create_file (path2, &h, true, 100 << 20) == 0);
  assert (file_size (path2) == 65536 + 65536);
  fd = open (path2, O_RDONLY);
  assert (addcow_read_header (fd, path2, &h2, &fsz) == 0);
  assert (addcow_load_bitmap (fd, path2, &h2, fsz, 100 << 20, &bm, &bmlen,
                              &fresh) == 0);
  assert (!fresh);
  free (bm);
  addcow_header_free (&h2);
  /* A file cut inside the bitmap. */
  close (fd);
  assert (truncate (path2, 65536 + 100) == 0);
  fd = open (path2, O_RDONLY);
  assert (addcow_read_header (fd, path2, &h2, &fsz) == 0);
  assert (addcow_load_bitmap (fd, path2, &h2, fsz, 100 << 20, &bm, &bmlen,
                              &fresh) == -1);
  assert (strstr (last_error, "truncated") && strstr (last_error, "e.add-cow"));
  addcow_header_free (&h2);
  close (fd);
  /* A file cut inside the header. */
  assert (truncate (path2, 1000) == 0);
  fd = open (path2, O_RDONLY);
  assert (addcow_read_header (fd, path2, &h2, &fsz) == -1);
  assert (strstr (last_error, "truncated"));
  close (fd);
  /* An empty file. */
  assert (truncate (path2, 0) == 0);
  fd = open (path2, O_RDONLY);
  assert (addcow_read_header (fd, path2, &h2, &fsz) == -1);
  close (fd);

  addcow_header_free (&h);
  unlink (path);
  unlink (path2);
  rmdir (dir);
  printf ("test-addcow-file: all passed\n");
  return 0;
}
