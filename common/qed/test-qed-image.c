/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the QED reader on hand-built images: lookups, zero
 * clusters, backing fall-through, and corrupt tables, truncated files
 * and backing loops, each of which must fail cleanly.
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

#include "byte-swapping.h"
#include "full-io.h"
#include "qad-error.h"
#include "qed-image.h"

#define CS 4096                 /* cluster size used by the tests */
#define TS 1                    /* table size: 512 entries per table */

static char last_error[1024];
static char dir[] = "/tmp/test-qed-image.XXXXXX";

static void
capture (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
  fprintf (stderr, "(error) %s\n", msg);
}

struct builder {
  int fd;
  uint64_t end;                 /* next free cluster */
  uint64_t l1_offset;
};

static char *
path_of (const char *name)
{
  static char buf[4][256];
  static int i;
  i = (i + 1) % 4;
  snprintf (buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static void
build (struct builder *b, const char *name, uint64_t image_size,
       const char *backing, uint64_t extra_features)
{
  struct qed_header h = {
    .cluster_size = CS, .table_size = TS, .header_size = 1,
    .l1_table_offset = CS, .image_size = image_size,
    .features = extra_features,
  };
  unsigned char hdr[CS] = { 0 };

  b->fd = open (path_of (name), O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert (b->fd >= 0);
  if (backing) {
    h.features |= QED_F_BACKING_FILE;
    h.backing_name_offset = QED_HEADER_BYTES;
    h.backing_name_size = strlen (backing);
    memcpy (hdr + QED_HEADER_BYTES, backing, strlen (backing));
  }
  qed_header_encode (&h, hdr);
  assert (full_pwrite (b->fd, hdr, CS, 0) == 0);
  assert (ftruncate (b->fd, 2 * CS) == 0);  /* empty L1 */
  b->end = 2 * CS;
  b->l1_offset = CS;
}

static void
set_entry (struct builder *b, uint64_t table, uint64_t index, uint64_t v)
{
  unsigned char e[8];
  store_le64 (e, v);
  assert (full_pwrite (b->fd, e, 8, table + index * 8) == 0);
}

/* Allocate the L2 table for L1 index I; returns its offset. */
static uint64_t
add_l2 (struct builder *b, uint64_t i)
{
  uint64_t off = b->end;
  b->end += CS;
  assert (ftruncate (b->fd, b->end) == 0);
  set_entry (b, b->l1_offset, i, off);
  return off;
}

/* Allocate a data cluster filled with BYTE at L2 index I. */
static uint64_t
add_data (struct builder *b, uint64_t l2, uint64_t i, int byte)
{
  unsigned char data[CS];
  uint64_t off = b->end;
  memset (data, byte, CS);
  assert (full_pwrite (b->fd, data, CS, off) == 0);
  b->end += CS;
  set_entry (b, l2, i, off);
  return off;
}

/* A backing opener for qed_open_dev: names relative to the test dir. */
static unsigned opener_calls;

static struct qad_blockdev *
test_opener (void *opaque, unsigned depth, const char *image,
             const char *name)
{
  opener_calls++;
  if (opaque)                   /* "refuse": as a filter without a place */
    return NULL;
  return qad_raw_open (path_of (name));
}

/* Open NAME through a raw block device, as the qed filter does. */
static struct qed_image *
open_dev (const char *name, bool refuse)
{
  struct qed_open_options o = { .readonly = true };
  struct qad_blockdev *file = qad_raw_open (path_of (name));

  assert (file != NULL);
  last_error[0] = '\0';
  opener_calls = 0;
  return qed_open_dev (file, &o, test_opener, refuse ? (void *) 1 : NULL);
}

static struct qed_image *
open_ro (const char *name)
{
  struct qed_open_options o = { .readonly = true };
  last_error[0] = '\0';
  return qed_open (path_of (name), &o);
}

static void
expect_open_error (const char *name, const char *want)
{
  struct qed_image *img = open_ro (name);
  if (img != NULL || strstr (last_error, want) == NULL) {
    fprintf (stderr, "FAIL: opening %s: expected error '%s', got '%s'\n",
             name, want, last_error);
    exit (EXIT_FAILURE);
  }
}

static void
expect_read_error (struct qed_image *img, uint64_t offset, const char *want)
{
  char buf[CS];
  last_error[0] = '\0';
  if (qed_pread (img, buf, CS, offset) == 0 ||
      strstr (last_error, want) == NULL || errno != EIO) {
    fprintf (stderr, "FAIL: read at %llu: expected error '%s', got '%s'\n",
             (unsigned long long) offset, want, last_error);
    exit (EXIT_FAILURE);
  }
}

static void
check_bytes (const char *buf, size_t n, int byte)
{
  size_t i;
  for (i = 0; i < n; ++i)
    if ((unsigned char) buf[i] != byte) {
      fprintf (stderr, "FAIL: byte %zu is %d, expected %d\n", i, buf[i], byte);
      exit (EXIT_FAILURE);
    }
}

int
main (void)
{
  struct builder b;
  struct qed_image *img;
  struct qed_mapping m;
  uint64_t l2, len;
  uint32_t flags;
  char buf[4 * CS];
  int fd;

  qad_set_error_handler (capture);
  assert (mkdtemp (dir) != NULL);

  /* A raw backing file of 3 clusters of 0xbb (smaller than the image). */
  fd = open (path_of ("base.raw"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  memset (buf, 0xbb, sizeof buf);
  assert (full_pwrite (fd, buf, 3 * CS, 0) == 0);
  close (fd);

  /* good.qed: 8 clusters; 0 = data 0xaa, 1 = zero, 2..3 unallocated,
   * 4..5 contiguous data 0xcc, rest unallocated; backing base.raw.
   */
  build (&b, "good.qed", 8 * CS, "base.raw", 0);
  l2 = add_l2 (&b, 0);
  add_data (&b, l2, 0, 0xaa);
  set_entry (&b, l2, 1, QED_ENTRY_ZERO);
  add_data (&b, l2, 4, 0xcc);
  add_data (&b, l2, 5, 0xcc);
  close (b.fd);

  img = open_ro ("good.qed");
  assert (img != NULL);
  assert (img->backing != NULL && img->backing_raw);
  assert (qed_pread (img, buf, CS, 0) == 0); check_bytes (buf, CS, 0xaa);
  assert (qed_pread (img, buf, CS, CS) == 0); check_bytes (buf, CS, 0);
  assert (qed_pread (img, buf, CS, 2 * CS) == 0); check_bytes (buf, CS, 0xbb);
  /* Cluster 3 is past the backing file's end: zeroes. */
  assert (qed_pread (img, buf, CS, 3 * CS) == 0); check_bytes (buf, CS, 0);
  assert (qed_pread (img, buf, 2 * CS, 4 * CS) == 0);
  check_bytes (buf, 2 * CS, 0xcc);
  /* Unaligned read across kinds. */
  assert (qed_pread (img, buf, 100, CS - 50) == 0);
  check_bytes (buf, 50, 0xaa); check_bytes (buf + 50, 50, 0);
  /* Maps. */
  assert (qed_map (img, 0, 8 * CS, &m) == 0);
  assert (m.kind == QED_KIND_DATA && m.length == CS);
  assert (qed_map (img, 4 * CS + 10, 8 * CS, &m) == 0);
  assert (m.kind == QED_KIND_DATA && m.length == 2 * CS - 10);
  assert (qed_map (img, 2 * CS, 2 * CS, &m) == 0);
  assert (m.kind == QED_KIND_UNALLOCATED && m.length == 2 * CS);
  /* Extents: data, zero (hole|zero), backing data, backing EOF. */
  assert (qed_extent (img, 0, 8 * CS, &len, &flags) == 0);
  assert (flags == 0 && len == CS);
  assert (qed_extent (img, CS, 8 * CS, &len, &flags) == 0);
  assert (flags == (QAD_EXTENT_HOLE | QAD_EXTENT_ZERO) && len == CS);
  assert (qed_extent (img, 2 * CS, 8 * CS, &len, &flags) == 0);
  assert (flags == 0 && len == CS);
  assert (qed_extent (img, 3 * CS, 8 * CS, &len, &flags) == 0);
  assert (flags == (QAD_EXTENT_HOLE | QAD_EXTENT_ZERO) && len == CS);
  /* Reading past the image is refused. */
  assert (qed_pread (img, buf, CS, 8 * CS) == -1);
  qed_close (img);

  /* A QED backing chain: top.qed -> good.qed -> base.raw. */
  build (&b, "top.qed", 8 * CS, "good.qed", 0);
  close (b.fd);
  img = open_ro ("top.qed");
  if (!img) fprintf (stderr, "%s\n", last_error);
  assert (img != NULL && !img->backing_raw);
  assert (qed_pread (img, buf, 4 * CS, 0) == 0);
  check_bytes (buf, CS, 0xaa); check_bytes (buf + CS, CS, 0);
  check_bytes (buf + 2 * CS, CS, 0xbb);
  qed_close (img);

  /* NO_PROBE: a QED backing read as raw shows the QED header bytes. */
  build (&b, "noprobe.qed", 8 * CS, "good.qed", QED_F_BACKING_FORMAT_NO_PROBE);
  close (b.fd);
  img = open_ro ("noprobe.qed");
  assert (img != NULL && img->backing_raw);
  assert (qed_pread (img, buf, CS, 0) == 0);
  assert (memcmp (buf, "QED", 4) == 0);
  qed_close (img);

  /* Backing loops and a missing backing file. */
  build (&b, "loop.qed", 8 * CS, "loop.qed", 0); close (b.fd);
  expect_open_error ("loop.qed", "loop");
  build (&b, "loopa.qed", 8 * CS, "loopb.qed", 0); close (b.fd);
  build (&b, "loopb.qed", 8 * CS, "loopa.qed", 0); close (b.fd);
  expect_open_error ("loopa.qed", "loop");
  build (&b, "nobacking.qed", 8 * CS, "missing.raw", 0); close (b.fd);
  expect_open_error ("nobacking.qed", "missing.raw");

  /* Truncated files. */
  fd = open (path_of ("short.qed"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert (write (fd, "QED\0\0\0\1\0", 8) == 8); close (fd);
  expect_open_error ("short.qed", "truncated QED header");
  fd = open (path_of ("empty.qed"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  close (fd);
  expect_open_error ("empty.qed", "not a QED image");
  build (&b, "nol1.qed", 8 * CS, NULL, 0);
  assert (ftruncate (b.fd, CS + 100) == 0); close (b.fd);
  expect_open_error ("nol1.qed", "l1_table_offset=4096");
  /* Unknown feature bit. */
  build (&b, "feat.qed", 8 * CS, NULL, UINT64_C (1) << 40); close (b.fd);
  expect_open_error ("feat.qed", "features=0x10000000000");

  /* Corrupt table entries: each fails the read that meets it. */
  build (&b, "bad.qed", 512 * 4 * CS, NULL, 0);
  l2 = add_l2 (&b, 0);
  add_data (&b, l2, 0, 0x11);
  set_entry (&b, l2, 1, 0x12345);               /* unaligned */
  set_entry (&b, l2, 2, 0);                     /* fine */
  set_entry (&b, l2, 3, CS / 2 * 0);            /* 0 again */
  set_entry (&b, l2, 4, 0x0);
  set_entry (&b, l2, 5, 0);
  set_entry (&b, l2, 6, UINT64_C (1) << 40);    /* past EOF */
  set_entry (&b, l2, 7, 2 * CS - CS);           /* header area? no: L1 */
  set_entry (&b, l2, 8, 0 * CS + 0);
  set_entry (&b, b.l1_offset, 1, 0);            /* unallocated L2 */
  set_entry (&b, b.l1_offset, 2, 3);            /* unaligned L2 */
  set_entry (&b, b.l1_offset, 3, UINT64_C (1) << 50); /* past EOF */
  close (b.fd);
  /* An L2 entry pointing into the header area (offset 0 is special,
   * so use a multi-cluster header).
   */
  img = open_ro ("bad.qed");
  assert (img != NULL);
  assert (qed_pread (img, buf, CS, 0) == 0); check_bytes (buf, CS, 0x11);
  expect_read_error (img, CS, "entry 1");
  expect_read_error (img, CS, "= 74565");
  expect_read_error (img, 6 * CS, "= 1099511627776");
  /* A read that starts fine and runs into a bad entry fails too. */
  last_error[0] = '\0';
  assert (qed_pread (img, buf, 2 * CS, 0) == -1);
  assert (qed_pread (img, buf, CS, 2 * CS) == 0); check_bytes (buf, CS, 0);
  assert (qed_pread (img, buf, CS, 512 * CS) == 0); check_bytes (buf, CS, 0);
  expect_read_error (img, 2 * 512 * CS, "L1 entry 2");
  expect_read_error (img, 3 * 512 * CS, "L1 entry 3");
  qed_close (img);

  /* Entries inside the header area, with header_size 2. */
  {
    struct qed_header h = {
      .cluster_size = CS, .table_size = TS, .header_size = 2,
      .l1_table_offset = 2 * CS, .image_size = 8 * CS,
    };
    unsigned char hdr[CS] = { 0 };
    fd = open (path_of ("hdr.qed"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    qed_header_encode (&h, hdr);
    assert (full_pwrite (fd, hdr, CS, 0) == 0);
    assert (ftruncate (fd, 4 * CS) == 0);
    b.fd = fd; b.l1_offset = 2 * CS;
    set_entry (&b, 2 * CS, 0, 3 * CS);          /* L2 at cluster 3 */
    set_entry (&b, 3 * CS, 0, CS);              /* data in header area */
    close (fd);
    img = open_ro ("hdr.qed");
    assert (img != NULL);
    expect_read_error (img, 0, "entry 0");
    qed_close (img);
  }

  /* The same images opened on block devices (the qed filter's way)
   * read and map the same, backing chain included.
   */
  {
    static char a[8 * CS], d[8 * CS];
    struct qed_image *viafd = open_ro ("top.qed");
    uint64_t off, n1, n2;
    uint32_t f1, f2;

    img = open_dev ("top.qed", false);
    assert (img != NULL && viafd != NULL);
    assert (opener_calls == 2);           /* good.qed, then base.raw */
    assert (img->fd == -1 && img->file != NULL);
    assert (qed_pread (img, d, sizeof d, 0) == 0);
    assert (qed_pread (viafd, a, sizeof a, 0) == 0);
    assert (memcmp (a, d, sizeof a) == 0);
    for (off = 0; off < 8 * CS; off += n1) {
      assert (qed_extent (viafd, off, 8 * CS - off, &n1, &f1) == 0);
      assert (qed_extent (img, off, 8 * CS - off, &n2, &f2) == 0);
      assert (n1 == n2 && f1 == f2);
    }
    assert (qed_prefetch_l2 (img, 8 * CS, 0) == 0);
    qed_close (viafd);
    qed_close (img);

    /* The opener refuses: the open fails with its error. */
    img = open_dev ("top.qed", true);
    assert (img == NULL && opener_calls == 1);

    /* A loop through devices is stopped by the depth cap. */
    img = open_dev ("loop.qed", false);
    assert (img == NULL && strstr (last_error, "too deep") != NULL);
    assert (opener_calls == QED_MAX_CHAIN_DEPTH);

    /* A truncated header read through a device. */
    fd = open (path_of ("tiny.qed"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert (write (fd, "QED\0abcdef", 10) == 10); close (fd);
    img = open_dev ("tiny.qed", false);
    assert (img == NULL &&
            strstr (last_error, "truncated QED header: file is 10") != NULL);
  }

  /* Probing refuses qcow2 backing files rather than reading them raw. */
  fd = open (path_of ("fake.qcow2"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  assert (write (fd, "QFI\xfb", 4) == 4); close (fd);
  build (&b, "onqcow2.qed", 8 * CS, "fake.qcow2", 0); close (b.fd);
  expect_open_error ("onqcow2.qed", "qcow2");

  /* The magic check used to refuse likely format mistakes. */
  assert (qed_file_has_magic (path_of ("good.qed")));
  assert (!qed_file_has_magic (path_of ("base.raw")));
  assert (!qed_file_has_magic (path_of ("empty.qed")));
  assert (!qed_file_has_magic (path_of ("missing")));

  /* Backing name resolution. */
  {
    char *r = qed_resolve_backing_name ("/a/b/c.qed", "d.raw");
    assert (strcmp (r, "/a/b/d.raw") == 0); free (r);
    r = qed_resolve_backing_name ("/a/b/c.qed", "/x.raw");
    assert (strcmp (r, "/x.raw") == 0); free (r);
    r = qed_resolve_backing_name ("c.qed", "d.raw");
    assert (strcmp (r, "d.raw") == 0); free (r);
    r = qed_resolve_backing_name ("/c.qed", "sub/d.raw");
    assert (strcmp (r, "/sub/d.raw") == 0); free (r);
  }

  if (fork () == 0)
    execlp ("rm", "rm", "-rf", dir, (char *) NULL);
  return 0;
}
