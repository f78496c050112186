/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of addcow-rebase.c: header edits; the sidecar replaced by write-aside
 * and rename keeps its bitmap (or takes the new one), its mode, owner
 * and lock, leaves no temporary file; the safe-rebase copy writes the
 * old backing's bytes only into bit-0 clusters where the backings
 * differ, and sets exactly those bits.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-file.h"
#include "addcow-rebase.h"
#include "full-io.h"
#include "qad-error.h"

#define CB 12                   /* 4 KiB clusters */
#define CS (1 << CB)
#define NCL 20
#define DISK (NCL * CS - 100)

static char dir[] = "/tmp/test-addcow-rebase.XXXXXX";

/* Create NAME holding LEN bytes of DATA. */
static void
make_file (const char *name, const unsigned char *data, size_t len)
{
  FILE *fp = fopen (name, "w");
  assert (fp && fwrite (data, 1, len, fp) == len && fclose (fp) == 0);
}

static int
count_entries (void)
{
  DIR *d = opendir (".");
  int n = 0;
  while (readdir (d))
    n++;
  closedir (d);
  return n - 2;
}

/* Copy, set and clear names and formats; refusals change nothing. */
static void
test_header_edits (void)
{
  struct addcow_header h, e;

  assert (addcow_header_init (&h, CB, "img.raw", "raw", "b1.raw",
                              "qed") == 0);
  assert (addcow_header_copy (&e, &h) == 0);
  assert (e.image_file != h.image_file && e.backing_file != h.backing_file);
  assert (strcmp (e.backing_file, "b1.raw") == 0);
  assert (strcmp (e.backing_format, "qed") == 0);
  assert (addcow_header_set_backing (&e, "d", "b2.raw", "vmdk") == -1);
  assert (addcow_header_set_backing (&e, "d", "b2.raw", NULL) == -1);
  assert (addcow_header_set_backing (&e, "d", NULL, "raw") == -1);
  assert (strcmp (e.backing_file, "b1.raw") == 0);
  assert (addcow_header_set_backing (&e, "d", "b2.raw", "raw") == 0);
  assert (strcmp (e.backing_file, "b2.raw") == 0);
  assert (strcmp (e.backing_format, "raw") == 0);
  assert (addcow_header_set_backing (&e, "d", NULL, NULL) == 0);
  assert (e.backing_file == NULL && e.backing_format[0] == '\0');
  assert (addcow_header_set_image (&e, "d", "nbd://host/x") == -1);
  assert (addcow_header_set_image (&e, "d", "") == -1);
  assert (strcmp (e.image_file, "img.raw") == 0);
  assert (addcow_header_set_image (&e, "d", "new.raw") == 0);
  assert (strcmp (e.image_file, "new.raw") == 0);
  /* The original is untouched. */
  assert (strcmp (h.image_file, "img.raw") == 0);
  assert (strcmp (h.backing_file, "b1.raw") == 0);
  addcow_header_free (&e);
  addcow_header_free (&h);
}

int
main (void)
{
  static unsigned char b1[DISK], b2[DISK], img[DISK], buf[CS];
  struct addcow_header h, h2;
  struct qad_blockdev *old, *new;
  uint64_t fsz, bmlen, copied, expect = 0;
  uint8_t *bm, *bm2;
  struct stat st;
  bool fresh;
  int fd, nfd, ifd, other, i, entries;

  assert (mkdtemp (dir) != NULL && chdir (dir) == 0);
  test_header_edits ();
  for (i = 0; i < DISK; ++i)
    b1[i] = 1 + i % 199;
  memcpy (b2, b1, DISK);
  for (i = 0; i < NCL; i += 2)            /* differ in even clusters */
    b2[i * CS] ^= 0xff;
  memset (img, 0xee, DISK);
  make_file ("b1.raw", b1, DISK);
  make_file ("b2.raw", b2, DISK);
  make_file ("img.raw", img, DISK);

  assert (addcow_header_init (&h, CB, "img.raw", "raw", "b1.raw",
                              "raw") == 0);
  assert (addcow_create_file ("d.add-cow", &h, true, DISK) == 0);
  addcow_header_free (&h);
  assert (chmod ("d.add-cow", 0600) == 0);
  /* As root, another user's file stays theirs. */
  if (geteuid () == 0)
    assert (chown ("d.add-cow", 1234, 1235) == 0);

  /* Clusters 0, 1, 5 are in the image. */
  fd = open ("d.add-cow", O_RDWR);
  assert (fd >= 0 && addcow_lock_fd (fd, "d") == 0);
  assert (addcow_read_header (fd, "d", &h, &fsz) == 0);
  assert (addcow_load_bitmap (fd, "d", &h, fsz, DISK, &bm, &bmlen,
                              &fresh) == 0);
  bm[0] = 0x23;
  assert (full_pwrite (fd, bm, 1, h.header_size) == 0);

  /* Unsafe: only the header changes; the bitmap is copied. */
  free (h.backing_file);
  h.backing_file = strdup ("b2.raw");
  entries = count_entries ();
  assert (addcow_replace_file (fd, "d.add-cow", &h, NULL, 0,
                               &nfd) == 0);
  assert (count_entries () == entries);
  /* The new file is locked while we hold it. */
  other = open ("d.add-cow", O_RDWR);
  assert (other >= 0 && addcow_lock_fd (other, "d") == -1);
  close (other);
  close (fd);
  assert (addcow_read_header (nfd, "d", &h2, &fsz) == 0);
  assert (strcmp (h2.backing_file, "b2.raw") == 0);
  assert (addcow_load_bitmap (nfd, "d", &h2, fsz, DISK, &bm2, &bmlen,
                              &fresh) == 0);
  assert (memcmp (bm, bm2, bmlen) == 0);
  assert (stat ("d.add-cow", &st) == 0 &&
          (st.st_mode & 0777) == 0600);
  assert (geteuid () != 0 || (st.st_uid == 1234 && st.st_gid == 1235));
  free (bm2);
  addcow_header_free (&h2);
  fd = nfd;

  /* Safe, from b1 to b2 (the header said b2 above, which is what an
   * unsafe rebase is for; the data follow b1 here).
   */
  old = qad_raw_open ("b1.raw");
  new = qad_raw_open ("b2.raw");
  assert (old && new);
  ifd = open ("img.raw", O_RDWR);
  assert (ifd >= 0);
  for (i = 0; i < NCL; i += 2)
    if (!bit_test (bm, i))
      expect += i == NCL - 1 ? DISK - i * CS : CS;
  assert (addcow_rebase_copy (ifd, "img.raw", DISK, CB, bm, old, new,
                              NULL, NULL, &copied) == 0);
  assert (copied == expect);
  for (i = 0; i < NCL; ++i) {
    int len = i == NCL - 1 ? DISK - i * CS : CS;
    bool in_image_before = i == 0 || i == 1 || i == 5;
    assert (bit_test (bm, i) == (in_image_before || i % 2 == 0));
    assert (full_pread (ifd, buf, len, (uint64_t) i * CS) == 0);
    if (!in_image_before && i % 2 == 0)
      assert (memcmp (buf, b1 + i * CS, len) == 0);
    else
      assert (buf[0] == 0xee);
  }
  addcow_header_note_bitmap (&h, bm, DISK);
  assert (!(h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED));
  assert (addcow_replace_file (fd, "d.add-cow", &h, bm, bmlen,
                               &nfd) == 0);
  close (fd);
  assert (addcow_read_header (nfd, "d", &h2, &fsz) == 0);
  assert (addcow_load_bitmap (nfd, "d", &h2, fsz, DISK, &bm2, &bmlen,
                              &fresh) == 0);
  assert (memcmp (bm, bm2, bmlen) == 0);
  free (bm2);
  addcow_header_free (&h2);
  close (nfd);

  /* Every bit set: the header says ALL_ALLOCATED. */
  {
    uint8_t full[NCL / 8 + 1];
    memset (full, 0xff, sizeof full);
    full[NCL / 8] = (1 << (NCL % 8)) - 1;
    addcow_header_note_bitmap (&h, full, DISK);
    assert (h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
    h.compat_features = 0;
  }

  /* An invalid header is refused before anything is written. */
  fd = open ("d.add-cow", O_RDWR);
  free (h.image_file);
  h.image_file = strdup ("b2.raw");       /* same as the backing */
  assert (addcow_replace_file (fd, "d.add-cow", &h, NULL, 0,
                               &nfd) == -1);
  assert (count_entries () == entries);
  close (fd);

  qad_blockdev_close (old);
  qad_blockdev_close (new);
  close (ifd);
  free (bm);
  addcow_header_free (&h);
  unlink ("d.add-cow");
  unlink ("b1.raw");
  unlink ("b2.raw");
  unlink ("img.raw");
  assert (chdir ("/") == 0);
  rmdir (dir);
  return 0;
}
