/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * Nothing read from the file is used before it is checked: the header
 * by qed_header_validate, each L1 entry when it is looked up (a whole
 * table inside the file, cluster-aligned, past the header area), each
 * L2 entry likewise (0, 1, or a whole cluster inside the file).  A bad
 * entry fails the request that met it with EIO and a message naming
 * the table, the index and the value; it never reads garbage.
 *
 * The image's bytes come from a local file (img->fd: the plugin, the
 * tool) or from any block device (img->file, read-only: the qed
 * filter reads through the plugin below it).  Only qed_read_file and
 * host_extent know the difference on the read path.
 *
 * Locking: img->lock protects the L1 copy and file_end, and is held
 * only to copy a value out; the L2 cache has its own lock; data I/O
 * runs with no lock held, so reads proceed in parallel.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "full-io.h"
#include "image-lock.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qed-image.h"

/* The files already open in one backing chain, to refuse loops. */
struct chain {
  bool lock;                    /* lock every backing file (read) */
  const struct qad_backing_rules *rules; /* NULL: follow */
  bool refusal_ok;              /* see qed_open_options */
  uint64_t l2_cache_bytes;      /* for every image in the chain */
  const struct qed_file_id *excluded;   /* files the chain must avoid */
  size_t nr_excluded;
  unsigned depth;
  dev_t dev[QED_MAX_CHAIN_DEPTH + 1];
  ino_t ino[QED_MAX_CHAIN_DEPTH + 1];
};

static struct qed_image *open_in_chain (const char *filename, int fd,
                                        const struct qed_open_options *opts,
                                        struct chain *chain);
static struct qad_blockdev *open_backing_in_chain (const char *image,
                                                   const char *name,
                                                   const char *path,
                                                   const char *format,
                                                   struct chain *chain);

bool
qed_table_offset_valid (const struct qed_geometry *g, uint64_t offset,
                        uint64_t file_size)
{
  return offset % g->cluster_size == 0 &&
    offset >= g->header_bytes &&
    range_within (offset, g->table_bytes, file_size);
}

bool
qed_cluster_offset_valid (const struct qed_geometry *g, uint64_t offset,
                          uint64_t file_size)
{
  return offset % g->cluster_size == 0 &&
    offset >= g->header_bytes &&
    range_within (offset, g->cluster_size, file_size);
}

int
qed_read_file (struct qed_image *img, void *buf, uint64_t count,
               uint64_t offset)
{
  if (img->file)
    return qad_blockdev_pread (img->file, buf, count, offset);
  return full_pread (img->fd, buf, count, offset);
}

/* How the L2 cache reads tables. */
static int
l2_read (void *opaque, void *buf, uint64_t count, uint64_t offset)
{
  return qed_read_file (opaque, buf, count, offset);
}

/* blockdev glue, so that a QED image can be a backing file. */
static int
dev_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
           uint64_t offset)
{
  return qed_pread ((struct qed_image *) dev, buf, count, offset);
}

static int
dev_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
            uint64_t *len, uint32_t *flags)
{
  return qed_extent ((struct qed_image *) dev, offset, max, len, flags);
}

static void
dev_close (struct qad_blockdev *dev)
{
  qed_close ((struct qed_image *) dev);
}

static const struct qad_blockdev_ops qed_dev_ops = {
  .pread = dev_pread,
  .extent = dev_extent,
  .close = dev_close,
};

char *
qed_resolve_backing_name (const char *image_path, const char *name)
{
  const char *slash;
  char *r;

  if (name[0] == '/' || (slash = strrchr (image_path, '/')) == NULL)
    r = strdup (name);
  else if (asprintf (&r, "%.*s/%s",
                     (int) (slash - image_path), image_path, name) == -1)
    r = NULL;
  if (r == NULL)
    qad_error ("%s: %m", image_path);
  return r;
}

int
qed_read_backing_name (struct qed_image *img, char **name)
{
  const struct qed_header *h = &img->header;
  char *s;

  *name = NULL;
  if (!(h->features & QED_F_BACKING_FILE))
    return 0;
  /* Offset and size were range-checked by qed_header_validate. */
  s = malloc (h->backing_name_size + 1);
  if (s == NULL) {
    qad_error ("%s: %m", img->dev.name);
    return -1;
  }
  if (qed_read_file (img, s, h->backing_name_size,
                     h->backing_name_offset) == -1) {
    qad_error ("%s: cannot read backing file name at offset %" PRIu32
               " size %" PRIu32 ": %m", img->dev.name,
               h->backing_name_offset, h->backing_name_size);
    free (s);
    return -1;
  }
  s[h->backing_name_size] = '\0';
  if (strlen (s) != h->backing_name_size) {
    qad_error ("%s: invalid QED header: backing file name contains a NUL "
               "byte (backing_filename_size=%" PRIu32 ")",
               img->dev.name, h->backing_name_size);
    free (s);
    errno = EINVAL;
    return -1;
  }
  *name = s;
  return 0;
}

static int
chain_push (struct chain *chain, int fd, const char *path)
{
  struct stat st;
  unsigned i;

  if (fstat (fd, &st) == -1) {
    qad_error ("%s: fstat: %m", path);
    return -1;
  }
  for (i = 0; i < chain->nr_excluded; ++i) {
    if (chain->excluded[i].dev == st.st_dev &&
        chain->excluded[i].ino == st.st_ino) {
      qad_error ("%s: backing chain loop: this backing file is %s",
                 path, chain->excluded[i].what);
      errno = ELOOP;
      return -1;
    }
  }
  for (i = 0; i < chain->depth; ++i) {
    if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino) {
      qad_error ("%s: backing chain loop: this file is already in the "
                 "chain at depth %u", path, i);
      errno = ELOOP;
      return -1;
    }
  }
  if (chain->depth > QED_MAX_CHAIN_DEPTH) {
    qad_error ("%s: backing chain too deep (more than %d files)",
               path, QED_MAX_CHAIN_DEPTH);
    errno = ELOOP;
    return -1;
  }
  chain->dev[chain->depth] = st.st_dev;
  chain->ino[chain->depth] = st.st_ino;
  chain->depth++;
  return 0;
}

/* Choose the format of a backing file from its first bytes MAGIC
 * (LEN of them, fewer for a tiny file): QED magic means QED, anything
 * else raw, except qcow2, which is refused.
 */
static int
probe_backing_format (const char *path, const unsigned char *magic,
                      size_t len, const char **format)
{
  if (len >= 4 && qed_probe_magic (magic, len))
    *format = "qed";
  else if (len >= 4 && memcmp (magic, "QFI\xfb", 4) == 0) {
    /* Reading a qcow2 file as raw would be a silent wrong read. */
    qad_error ("%s: backing file is qcow2, which cannot be read here "
               "(only QED and raw backing files are supported)", path);
    errno = ENOTSUP;
    return -1;
  }
  else
    *format = "raw";
  return 0;
}

/* Open the backing file PATH (NAME as recorded in IMAGE).  The
 * descriptor opened and checked by qad_backing_open is the one used:
 * a QED backing is not opened a second time by name.
 */
static struct qad_blockdev *
open_backing_in_chain (const char *image, const char *name, const char *path,
                       const char *format, struct chain *chain)
{
  unsigned char magic[4];
  struct qed_open_options opts = {
    .readonly = true, .lock = chain->lock,
    .l2_cache_bytes = chain->l2_cache_bytes,
  };
  struct qed_image *img;
  ssize_t r;
  int fd;

  fd = qad_backing_open (chain->rules, image, name, path);
  if (fd == -1)
    return NULL;
  if (chain_push (chain, fd, path) == -1 ||
      (chain->lock && qad_lock_image (fd, path, false) == -1)) {
    close (fd);
    return NULL;
  }

  if (format == NULL) {
    r = pread (fd, magic, sizeof magic, 0);
    if (probe_backing_format (path, magic, r > 0 ? r : 0, &format) == -1) {
      close (fd);
      return NULL;
    }
  }

  if (strcmp (format, "raw") == 0)
    return qad_raw_open_fd (fd, path);
  if (strcmp (format, "qed") != 0) {
    qad_error ("%s: unsupported backing format: %s (use raw or qed)",
               path, format);
    close (fd);
    errno = ENOTSUP;
    return NULL;
  }
  chain->depth--;               /* open_in_chain pushes it again */
  img = open_in_chain (path, fd, &opts, chain);
  return img ? &img->dev : NULL;
}

struct qad_blockdev *
qed_open_backing_checked (const char *image, const char *name,
                          const char *path, const char *format, bool lock,
                          const struct qad_backing_rules *rules,
                          const struct qed_file_id *excluded,
                          size_t nr_excluded)
{
  struct chain chain = { .lock = lock, .rules = rules,
                         .excluded = excluded, .nr_excluded = nr_excluded };

  return open_backing_in_chain (image, name, path, format, &chain);
}

struct qad_blockdev *
qed_open_backing_excluding (const char *path, const char *format, bool lock,
                            const struct qed_file_id *excluded,
                            size_t nr_excluded)
{
  return qed_open_backing_checked (path, path, path, format, lock, NULL,
                                   excluded, nr_excluded);
}

struct qad_blockdev *
qed_open_backing (const char *path, const char *format, bool lock)
{
  return qed_open_backing_excluding (path, format, lock, NULL, 0);
}

static int
open_backing (struct qed_image *img, struct chain *chain)
{
  CLEANUP_FREE char *name = NULL;

  if (qed_read_backing_name (img, &name) == -1)
    return -1;
  if (name == NULL)
    return 0;
  img->backing_path = qed_resolve_backing_name (img->dev.name, name);
  if (img->backing_path == NULL)
    return -1;
  img->backing_raw = (img->header.features & QED_F_BACKING_FORMAT_NO_PROBE) != 0;
  img->backing = open_backing_in_chain (img->dev.name, name,
                                        img->backing_path,
                                        img->backing_raw ? "raw" : NULL,
                                        chain);
  if (img->backing == NULL && errno == EPERM && chain->refusal_ok) {
    img->backing_refused = true;
    return 0;
  }
  if (img->backing == NULL && errno == EPERM)
    return -1;                  /* the refusal said it all */
  if (img->backing == NULL) {
    qad_error ("%s: cannot open its backing file %s", img->dev.name,
               img->backing_path);
    return -1;
  }
  if (img->backing->ops != &qed_dev_ops)
    img->backing_raw = true;
  return 0;
}

/* A new image structure with its locks, no file yet. */
static struct qed_image *
image_new (const char *filename, bool readonly)
{
  struct qed_image *img;

  img = calloc (1, sizeof *img);
  if (img == NULL || (img->dev.name = strdup (filename)) == NULL) {
    qad_error ("%s: %m", filename);
    free (img);
    return NULL;
  }
  img->fd = -1;
  img->dev.ops = &qed_dev_ops;
  img->readonly = readonly;
  img->lock_fd = -1;
  pthread_mutex_init (&img->lock, NULL);
  pthread_mutex_init (&img->l2_alloc_lock, NULL);
  rangelock_init (&img->changing);
  pthread_mutex_init (&img->sync_lock, NULL);
  pthread_cond_init (&img->sync_done, NULL);
  return img;
}

/* Read and validate the header of an image file of FILE_SIZE bytes,
 * read its L1 table and set up the L2 cache.
 */
static int
image_load (struct qed_image *img, uint64_t file_size,
            const struct qed_open_options *opts)
{
  const char *filename = img->dev.name;
  unsigned char buf[QED_HEADER_BYTES];
  uint64_t i, got;

  /* A short file reads as zeroes past its end: count what is real. */
  got = MIN (file_size, (uint64_t) sizeof buf);
  if (qed_read_file (img, buf, got, 0) == -1) {
    qad_error ("%s: cannot read the QED header: %m", filename);
    return -1;
  }
  if (got < 4 || !qed_probe_magic (buf, got)) {
    qad_error ("%s: not a QED image (bad magic)", filename);
    errno = EINVAL;
    return -1;
  }
  if (got != sizeof buf) {
    qad_error ("%s: truncated QED header: file is %" PRIu64 " bytes, "
               "the header needs %d", filename, got, QED_HEADER_BYTES);
    errno = EINVAL;
    return -1;
  }
  qed_header_decode (buf, &img->header);
  if (qed_header_validate (filename, &img->header, file_size,
                           &img->geom) == -1)
    return -1;
  img->file_end = file_size;
  img->dev.size = img->header.image_size;

  /* Every L1 and L2 table is this size: refuse before allocating. */
  if (img->geom.table_bytes > qad_limits.max_table_bytes) {
    qad_error ("%s: QED tables of %" PRIu64 " bytes (table_size=%" PRIu32
               " x cluster_size=%" PRIu32 ") exceed the limit of %" PRIu64
               " bytes (raise it with max-table-size=)",
               filename, img->geom.table_bytes, img->header.table_size,
               img->header.cluster_size, qad_limits.max_table_bytes);
    errno = EFBIG;
    return -1;
  }
  img->l1 = malloc (img->geom.table_bytes);
  if (img->l1 == NULL) {
    qad_error ("%s: cannot allocate the L1 table (%" PRIu64 " bytes): %m",
               filename, img->geom.table_bytes);
    return -1;
  }
  if (qed_read_file (img, img->l1, img->geom.table_bytes,
                     img->header.l1_table_offset) == -1) {
    qad_error ("%s: cannot read the L1 table at offset %" PRIu64 ": %m",
               filename, img->header.l1_table_offset);
    return -1;
  }
  for (i = 0; i < img->geom.table_entries; ++i)
    img->l1[i] = load_le64 (&img->l1[i]);

  img->l2cache = qed_l2cache_new (img->geom.table_bytes,
                                  opts->l2_cache_bytes ?
                                  opts->l2_cache_bytes :
                                  QED_DEFAULT_L2_CACHE_BYTES);
  if (img->l2cache == NULL)
    return -1;

  img->need_check_on_disk =
    (img->header.features & QED_F_NEED_CHECK) != 0;
  img->unchecked = img->need_check_on_disk;
  return 0;
}

/* Open FILENAME, or use FD (already open, read-only) when >= 0. */
static struct qed_image *
open_in_chain (const char *filename, int fd,
               const struct qed_open_options *opts, struct chain *chain)
{
  struct qed_image *img;
  struct stat st;

  img = image_new (filename, opts->readonly);
  if (img == NULL) {
    if (fd >= 0)
      close (fd);
    return NULL;
  }

  img->fd = fd >= 0 ? fd :
    open (filename, (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (img->fd == -1) {
    qad_error ("%s: cannot open: %m", filename);
    goto err;
  }
  if (chain_push (chain, img->fd, filename) == -1)
    goto err;
  if (opts->lock && qad_lock_image (img->fd, filename, !opts->readonly) == -1)
    goto err;
  if (fstat (img->fd, &st) == -1) {
    qad_error ("%s: fstat: %m", filename);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    qad_error ("%s: not a regular file", filename);
    errno = EINVAL;
    goto err;
  }

  if (image_load (img, st.st_size, opts) == -1)
    goto err;
  if (!opts->no_backing && open_backing (img, chain) == -1)
    goto err;
  return img;

 err:
  {
    int saved_errno = errno;
    qed_close (img);
    errno = saved_errno;
  }
  return NULL;
}

struct qed_image *
qed_image_of (struct qad_blockdev *dev)
{
  return dev && dev->ops == &qed_dev_ops ? (struct qed_image *) dev : NULL;
}

struct qed_image *
qed_open (const char *filename, const struct qed_open_options *opts)
{
  struct chain chain = {
    .lock = opts->lock,
    .rules = opts->backing_rules,
    .refusal_ok = opts->backing_refusal_ok,
    .l2_cache_bytes = opts->l2_cache_bytes,
  };

  return open_in_chain (filename, -1, opts, &chain);
}

static struct qed_image *open_dev_in_chain (struct qad_blockdev *file,
                                            const struct qed_open_options *,
                                            qed_backing_opener opener,
                                            void *opaque, unsigned depth);

/* The backing chain of an image opened on a block device. */
static int
open_dev_backing (struct qed_image *img, const struct qed_open_options *opts,
                  qed_backing_opener opener, void *opaque, unsigned depth)
{
  CLEANUP_FREE char *name = NULL;
  struct qad_blockdev *file;
  struct qed_image *bimg;
  unsigned char magic[4];
  const char *format = "raw";
  uint64_t got;

  if (qed_read_backing_name (img, &name) == -1)
    return -1;
  if (name == NULL)
    return 0;
  if (depth >= QED_MAX_CHAIN_DEPTH) {
    qad_error ("%s: backing chain too deep (more than %d files)",
               img->dev.name, QED_MAX_CHAIN_DEPTH);
    errno = ELOOP;
    return -1;
  }
  file = opener (opaque, depth + 1, img->dev.name, name);
  if (file == NULL)
    return -1;
  img->backing_path = strdup (file->name);
  if (img->backing_path == NULL) {
    qad_error ("%s: %m", img->dev.name);
    qad_blockdev_close (file);
    return -1;
  }

  if (!(img->header.features & QED_F_BACKING_FORMAT_NO_PROBE)) {
    got = MIN (file->size, (uint64_t) sizeof magic);
    if (qad_blockdev_pread (file, magic, got, 0) == -1 ||
        probe_backing_format (file->name, magic, got, &format) == -1) {
      qad_blockdev_close (file);
      return -1;
    }
  }
  if (strcmp (format, "raw") == 0) {
    img->backing = file;
    img->backing_raw = true;
    return 0;
  }
  bimg = open_dev_in_chain (file, opts, opener, opaque, depth + 1);
  if (bimg == NULL)
    return -1;
  img->backing = &bimg->dev;
  return 0;
}

static struct qed_image *
open_dev_in_chain (struct qad_blockdev *file,
                   const struct qed_open_options *opts,
                   qed_backing_opener opener, void *opaque, unsigned depth)
{
  struct qed_image *img = image_new (file->name, true);

  if (img == NULL) {
    qad_blockdev_close (file);
    return NULL;
  }
  img->file = file;
  if (image_load (img, file->size, opts) == -1 ||
      open_dev_backing (img, opts, opener, opaque, depth) == -1) {
    int saved_errno = errno;
    qed_close (img);
    errno = saved_errno;
    return NULL;
  }
  return img;
}

struct qed_image *
qed_open_dev (struct qad_blockdev *file, const struct qed_open_options *opts,
              qed_backing_opener opener, void *opaque)
{
  return open_dev_in_chain (file, opts, opener, opaque, 0);
}

int
qed_upgrade_readwrite (struct qed_image *img, bool lock)
{
  const char *name = img->dev.name;
  struct stat st_old, st_new;
  int fd;

  if (!img->readonly)
    return 0;
  if (img->fd < 0) {
    qad_error ("%s: opened from a block device, not a local file: it "
               "cannot be made writable", name);
    errno = EROFS;
    return -1;
  }
  fd = open (name, O_RDWR | O_CLOEXEC);
  if (fd == -1) {
    qad_error ("%s: cannot open for writing: %m", name);
    return -1;
  }
  if (fstat (img->fd, &st_old) == -1 || fstat (fd, &st_new) == -1) {
    qad_error ("%s: fstat: %m", name);
    goto err;
  }
  if (st_old.st_dev != st_new.st_dev || st_old.st_ino != st_new.st_ino) {
    qad_error ("%s: the file was replaced since it was opened; "
               "restart the server", name);
    errno = ESTALE;
    goto err;
  }
  /* OFD locks belong to the open file description: extend the ones
   * the read-only descriptor holds (a conflict with our own locks is
   * not one), and keep that descriptor open for as long as the image.
   */
  if (lock && qad_lock_image (img->fd, name, true) == -1)
    goto err;
  img->lock_fd = img->fd;
  img->fd = fd;
  img->readonly = false;
  return 0;

 err:
  {
    int saved_errno = errno;
    close (fd);
    errno = saved_errno;
  }
  return -1;
}

int
qed_close (struct qed_image *img)
{
  int r = 0;

  if (img == NULL)
    return 0;
  /* The final flush also clears NEED_CHECK when it may. */
  if (!img->readonly && img->fd >= 0 && img->l1)
    r = qed_flush (img);
  qad_blockdev_close (img->backing);
  qed_l2cache_free (img->l2cache);
  if (img->fd >= 0)
    close (img->fd);
  if (img->lock_fd >= 0)
    close (img->lock_fd);
  qad_blockdev_close (img->file);
  free (img->l1);
  free (img->backing_path);
  free (img->dev.name);
  rangelock_free (&img->changing);
  pthread_mutex_destroy (&img->l2_alloc_lock);
  pthread_cond_destroy (&img->sync_done);
  pthread_mutex_destroy (&img->sync_lock);
  pthread_mutex_destroy (&img->lock);
  free (img);
  return r;
}

/* Error for a table entry that failed validation. */
static void
bad_entry (struct qed_image *img, const char *table, uint64_t table_offset,
           uint64_t index, uint64_t value, uint64_t guest_offset,
           uint64_t file_end)
{
  qad_error ("%s: corrupt QED image: %s entry %" PRIu64
             " (table at offset %" PRIu64 ", guest offset %" PRIu64
             ") = %" PRIu64 ": must be 0%s or the cluster-aligned offset of "
             "a whole %s past the header area inside the file "
             "(%" PRIu64 " bytes)",
             img->dev.name, table, index, table_offset, guest_offset, value,
             strcmp (table, "L2") == 0 ? ", 1" : "",
             strcmp (table, "L2") == 0 ? "cluster" : "table", file_end);
  errno = EIO;
}

/* How many L2 entries to copy out of the cache per batch. */
#define MAP_BATCH 256

int
qed_map (struct qed_image *img, uint64_t offset, uint64_t len,
         struct qed_mapping *m)
{
  const struct qed_geometry *g = &img->geom;
  const unsigned l1_shift = g->cluster_bits + g->table_bits;
  const uint64_t l2_span = UINT64_C (1) << l1_shift;
  uint64_t entries[MAP_BATCH];
  uint64_t pos = offset, end;
  bool first = true;

  if (len == 0 || offset >= img->dev.size) {
    qad_error ("%s: internal error: map out of range: offset=%" PRIu64
               " len=%" PRIu64, img->dev.name, offset, len);
    errno = EINVAL;
    return -1;
  }
  end = offset + MIN (len, img->dev.size - offset);
  m->length = 0;

  while (pos < end) {
    uint64_t l1_index = pos >> l1_shift;
    uint64_t span_end = pos - (pos & (l2_span - 1));
    uint64_t l2_offset, file_end;

    /* span_end = start of the next L2 span, saturating. */
    if (ADD_OVERFLOW (span_end, l2_span, &span_end))
      span_end = UINT64_MAX;
    span_end = MIN (span_end, end);

    pthread_mutex_lock (&img->lock);
    l2_offset = img->l1[l1_index];
    file_end = img->file_end;
    pthread_mutex_unlock (&img->lock);

    if (l2_offset == 0) {
      if (!first && m->kind != QED_KIND_UNALLOCATED)
        return 0;
      m->kind = QED_KIND_UNALLOCATED;
      first = false;
      m->length += span_end - pos;
      pos = span_end;
      continue;
    }
    if (!qed_table_offset_valid (g, l2_offset, file_end)) {
      bad_entry (img, "L1", img->header.l1_table_offset, l1_index,
                 l2_offset, pos, file_end);
      return -1;
    }

    while (pos < span_end) {
      uint64_t l2_index = (pos >> g->cluster_bits) & (g->table_entries - 1);
      uint64_t nclusters =
        ((span_end - 1) >> g->cluster_bits) - (pos >> g->cluster_bits) + 1;
      uint64_t n = MIN (nclusters, (uint64_t) MAP_BATCH);
      uint64_t i;

      if (qed_l2cache_get (img->l2cache, l2_read, img, img->dev.name,
                           l2_offset, l2_index, n, entries) == -1)
        return -1;
      /* Entries may point at clusters allocated since file_end was
       * read above; file_end only grows while serving.
       */
      pthread_mutex_lock (&img->lock);
      file_end = img->file_end;
      pthread_mutex_unlock (&img->lock);
      for (i = 0; i < n; ++i) {
        uint64_t e = entries[i];
        uint64_t in_cluster = pos & (g->cluster_size - 1);
        uint64_t step = MIN (g->cluster_size - in_cluster, span_end - pos);
        enum qed_kind kind;

        if (e == QED_ENTRY_UNALLOCATED)
          kind = QED_KIND_UNALLOCATED;
        else if (e == QED_ENTRY_ZERO)
          kind = QED_KIND_ZERO;
        else if (qed_cluster_offset_valid (g, e, file_end))
          kind = QED_KIND_DATA;
        else {
          if (first) {
            bad_entry (img, "L2", l2_offset, l2_index + i, e, pos, file_end);
            return -1;
          }
          /* Report the good part; the next call meets the bad entry. */
          return 0;
        }

        if (first) {
          m->kind = kind;
          if (kind == QED_KIND_DATA)
            m->host_offset = e + in_cluster;
          first = false;
        }
        else if (kind != m->kind ||
                 (kind == QED_KIND_DATA &&
                  e + in_cluster != m->host_offset + m->length))
          return 0;
        m->length += step;
        pos += step;
      }
    }
  }
  return 0;
}

int
qed_prefetch_l2 (struct qed_image *img, uint64_t count, uint64_t offset)
{
  const struct qed_geometry *g = &img->geom;
  const unsigned l1_shift = g->cluster_bits + g->table_bits;
  uint64_t first, last, i;

  if (count == 0 || offset >= img->dev.size)
    return 0;
  count = MIN (count, img->dev.size - offset);
  first = offset >> l1_shift;
  last = (offset + count - 1) >> l1_shift;
  for (i = first; i <= last; ++i) {
    uint64_t l2_offset, file_end;

    pthread_mutex_lock (&img->lock);
    l2_offset = img->l1[i];
    file_end = img->file_end;
    pthread_mutex_unlock (&img->lock);
    if (l2_offset == 0)
      continue;
    if (!qed_table_offset_valid (g, l2_offset, file_end)) {
      bad_entry (img, "L1", img->header.l1_table_offset, i, l2_offset,
                 i << l1_shift, file_end);
      return -1;
    }
    if (qed_l2cache_load (img->l2cache, l2_read, img, img->dev.name,
                          l2_offset) == -1)
      return -1;
  }
  return 0;
}

int
qed_pread (struct qed_image *img, void *buf, uint64_t count, uint64_t offset)
{
  char *p = buf;

  if (!range_within (offset, count, img->dev.size)) {
    qad_error ("%s: read beyond the end of the image: offset=%" PRIu64
               " count=%" PRIu64 " size=%" PRIu64,
               img->dev.name, offset, count, img->dev.size);
    errno = EINVAL;
    return -1;
  }

  while (count > 0) {
    struct qed_mapping m;

    if (qed_map (img, offset, count, &m) == -1)
      return -1;
    switch (m.kind) {
    case QED_KIND_DATA:
      if (qed_read_file (img, p, m.length, m.host_offset) == -1) {
        qad_error ("%s: read failed: host offset %" PRIu64 " length %"
                   PRIu64 ": %m", img->dev.name, m.host_offset, m.length);
        return -1;
      }
      break;
    case QED_KIND_ZERO:
      memset (p, 0, m.length);
      break;
    case QED_KIND_UNALLOCATED:
      if (img->backing) {
        if (qad_blockdev_pread (img->backing, p, m.length, offset) == -1)
          return -1;
      }
      else
        memset (p, 0, m.length);
      break;
    }
    p += m.length;
    offset += m.length;
    count -= m.length;
  }
  return 0;
}

/* Allocated clusters that were zeroed or trimmed in place are holes in
 * the file: report them as zero (allocated, so not HOLE), as nbdkit's
 * file plugin would.
 */
static int
host_extent (struct qed_image *img, const struct qed_mapping *m,
             uint64_t *len, uint32_t *flags)
{
  off_t pos;

  if (img->file) {
    /* Ask the device; only its ZERO flag matters (allocated here). */
    if (qad_blockdev_extent (img->file, m->host_offset, m->length,
                             len, flags) == -1)
      return -1;
    *len = MIN (MAX (*len, UINT64_C (1)), m->length);
    *flags &= QAD_EXTENT_ZERO;
    return 0;
  }
  pos = lseek (img->fd, m->host_offset, SEEK_DATA);
  *flags = 0;
  if (pos == -1 && errno == ENXIO) {
    *flags = QAD_EXTENT_ZERO;
    return 0;
  }
  if (pos == -1)
    return 0;
  if ((uint64_t) pos > m->host_offset) {
    *len = MIN (m->length, (uint64_t) pos - m->host_offset);
    *flags = QAD_EXTENT_ZERO;
    return 0;
  }
  pos = lseek (img->fd, m->host_offset, SEEK_HOLE);
  if (pos != -1 && (uint64_t) pos > m->host_offset)
    *len = MIN (m->length, (uint64_t) pos - m->host_offset);
  return 0;
}

int
qed_extent (struct qed_image *img, uint64_t offset, uint64_t max,
            uint64_t *len, uint32_t *flags)
{
  struct qed_mapping m;

  if (offset >= img->dev.size) {
    *len = max;
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  if (qed_map (img, offset, MIN (max, img->dev.size - offset), &m) == -1)
    return -1;
  *len = m.length;
  switch (m.kind) {
  case QED_KIND_DATA:
    if (host_extent (img, &m, len, flags) == -1)
      return -1;
    break;
  case QED_KIND_ZERO:
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    break;
  case QED_KIND_UNALLOCATED:
    if (img->backing)
      return qad_blockdev_extent (img->backing, offset, m.length, len, flags);
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    break;
  }
  return 0;
}
