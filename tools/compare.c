/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img compare A B: do two disks read the same, as qemu-img
 * compare.  Each side is a QED image (with its backing chain), an
 * add-cow file (its raw image, bitmap and backing chain) or a raw
 * file, detected from the magic unless -f / -F say raw.  Read-only:
 * nothing is written and nothing is locked.
 *
 * Exit status, as qemu-img: 0 identical, 1 different, 2 a file could
 * not be opened, 3 a read failed.  As qemu-img (without -s), when the
 * sizes differ the larger image must read zeroes past the smaller's
 * end; with -s a size difference is itself a mismatch.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-file.h"
#include "cleanup.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "pieces.h"
#include "qad-img.h"
#include "qed-image.h"

#define CHUNK (1024 * 1024)

/* An add-cow disk as a block device (read-only). */
struct addcow_disk {
  struct qad_blockdev dev;
  int image_fd;
  uint8_t *bitmap;              /* NULL when ALL_ALLOCATED */
  uint32_t cluster_bits;
  struct qad_blockdev *backing; /* NULL: none, or ALL_ALLOCATED */
};

/* A piece of addcow_disk_pread, inside one cluster. */
static int
read_cluster_piece (void *opaque, void *buf, uint64_t count,
                    uint64_t offset)
{
  struct addcow_disk *d = opaque;

  if (d->bitmap == NULL || bit_test (d->bitmap, offset >> d->cluster_bits))
    return full_pread (d->image_fd, buf, count, offset);
  if (d->backing)
    return qad_blockdev_pread (d->backing, buf, count, offset);
  memset (buf, 0, count);
  return 0;
}

static int
addcow_disk_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
                   uint64_t offset)
{
  struct addcow_disk *d = (struct addcow_disk *) dev;

  return qad_read_pieces (dev->name, buf, count, offset,
                          UINT64_C (1) << d->cluster_bits,
                          read_cluster_piece, d);
}

static int
addcow_disk_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
                    uint64_t *len, uint32_t *flags)
{
  *len = max;
  *flags = 0;
  return 0;
}

static void
addcow_disk_close (struct qad_blockdev *dev)
{
  struct addcow_disk *d = (struct addcow_disk *) dev;

  if (d->image_fd >= 0)
    close (d->image_fd);
  free (d->bitmap);
  qad_blockdev_close (d->backing);
  free (dev->name);
  free (d);
}

static const struct qad_blockdev_ops addcow_disk_ops = {
  .pread = addcow_disk_pread,
  .extent = addcow_disk_extent,
  .close = addcow_disk_close,
};

static struct qad_blockdev *
addcow_disk_open (const char *file)
{
  struct addcow_disk *d;
  struct addcow_header h;
  CLEANUP_FREE char *image = NULL, *bk = NULL;
  struct stat st;
  uint64_t fsz, bmlen;
  bool fresh;
  int fd;

  d = calloc (1, sizeof *d);
  if (d == NULL || (d->dev.name = strdup (file)) == NULL) {
    perror ("qad-img: calloc");
    free (d);
    return NULL;
  }
  d->dev.ops = &addcow_disk_ops;
  d->image_fd = -1;
  fd = open (file, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
    addcow_disk_close (&d->dev);
    return NULL;
  }
  if (addcow_read_header (fd, file, &h, &fsz) == -1) {
    close (fd);
    addcow_disk_close (&d->dev);
    return NULL;
  }
  d->cluster_bits = h.cluster_bits;
  image = addcow_resolve_name (file, h.image_file);
  if (image == NULL ||
      (d->image_fd = open (image, O_RDONLY | O_CLOEXEC)) == -1 ||
      fstat (d->image_fd, &st) == -1) {
    fprintf (stderr, "qad-img: %s: the image file %s: %s\n", file,
             image ? image : h.image_file, strerror (errno));
    goto err;
  }
  d->dev.size = st.st_size;
  if (!(h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)) {
    if (addcow_load_bitmap (fd, file, &h, fsz, d->dev.size, &d->bitmap,
                            &bmlen, &fresh) == -1)
      goto err;
    if (h.backing_file) {
      if (addcow_refuse_supplied (file, &h, "compare",
                                  "reads local files only: compare the "
                                  "server's export instead") == -1)
        goto err;
      bk = addcow_resolve_name (file, h.backing_file);
      if (bk && addcow_name_is_uri (bk)) {
        fprintf (stderr, "qad-img: %s: the backing file is an NBD URI "
                 "(%s); compare reads local files only\n", file, bk);
        goto err;
      }
      d->backing = bk ? qed_open_backing (bk, h.backing_format, false)
        : NULL;
      if (d->backing == NULL)
        goto err;
    }
  }
  close (fd);
  addcow_header_free (&h);
  return &d->dev;

 err:
  close (fd);
  addcow_header_free (&h);
  addcow_disk_close (&d->dev);
  return NULL;
}

/* Open FILE as a disk: by its magic unless FORCE_RAW. */
static struct qad_blockdev *
open_disk (const char *file, const char *fmt)
{
  unsigned char magic[4];
  struct qed_open_options opts = { .readonly = true };
  struct qed_image *img;
  ssize_t r;

  if (fmt && strcmp (fmt, "raw") != 0 && strcmp (fmt, "qed") != 0 &&
      strcmp (fmt, "add-cow") != 0) {
    fprintf (stderr, "qad-img: compare: format %s: must be raw, qed or "
             "add-cow\n", fmt);
    return NULL;
  }
  r = read_magic (file, magic, false);
  if (r == -1)
    return NULL;
  if (fmt == NULL) {
    const struct qad_format *f = format_of_magic (magic, r);
    fmt = f ? f->name : "raw";
  }
  if (strcmp (fmt, "qdb") == 0) {
    fprintf (stderr, "qad-img: %s: a QDB file holds bitmaps, not a disk: "
             "compare the disks it tracks\n", file);
    return NULL;
  }
  if (strcmp (fmt, "add-cow") == 0)
    return addcow_disk_open (file);
  if (strcmp (fmt, "qed") == 0) {
    img = qed_open (file, &opts);
    return img ? &img->dev : NULL;
  }
  return qad_raw_open (file);
}

/* The first byte where A and B differ, or -1. */
static int64_t
first_difference (const char *a, const char *b, size_t n)
{
  size_t i;

  if (memcmp (a, b, n) == 0)
    return -1;
  for (i = 0; a[i] == b[i]; ++i)
    ;
  return i;
}

int
compare_verb (int argc, char **argv)
{
  const char *fa = NULL, *fb = NULL;
  bool strict = false;
  struct qad_blockdev *a = NULL, *b = NULL;
  CLEANUP_FREE char *ba = NULL, *bb = NULL;
  uint64_t off, end;
  int64_t d;
  int c, ret = 2;

  while ((c = getopt (argc, argv, "f:F:s")) != -1) {
    switch (c) {
    case 'f': fa = optarg; break;
    case 'F': fb = optarg; break;
    case 's': strict = true; break;
    default: return 2;
    }
  }
  if (argc - optind != 2) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img compare [-f FMT] [-F FMT] [-s] [-p] "
             "[-q] A B\n");
    return 2;
  }
  ba = malloc (CHUNK);
  bb = malloc (CHUNK);
  if (ba == NULL || bb == NULL) {
    perror ("qad-img: malloc");
    return 2;
  }
  a = open_disk (argv[optind], fa);
  if (a)
    b = open_disk (argv[optind + 1], fb);
  if (a == NULL || b == NULL)
    goto out;

  ret = 3;
  if (a->size != b->size) {
    if (strict) {
      printf ("Strict mode: Image size mismatch!\n");
      ret = 1;
      goto out;
    }
    printf ("Warning: Image size mismatch!\n");
  }
  end = MAX (a->size, b->size);
  for (off = 0; off < end; ) {
    size_t n = MIN ((uint64_t) CHUNK, end - off);

    /* Past the smaller disk's end it reads zeroes, so the larger one
     * must read zeroes there too.
     */
    if (qad_blockdev_pread (a, ba, n, off) == -1 ||
        qad_blockdev_pread (b, bb, n, off) == -1)
      goto out;
    d = first_difference (ba, bb, n);
    if (d >= 0) {
      printf ("Content mismatch at offset %" PRIu64 "!\n", off + d);
      ret = 1;
      goto out;
    }
    off += n;
    if (qad_progress)
      print_progress (NULL, off, end);
  }
  if (qad_progress && end == 0)
    print_progress (NULL, 0, 0);
  printf ("Images are identical.\n");
  ret = 0;

 out:
  qad_blockdev_close (a);
  qad_blockdev_close (b);
  return ret;
}
