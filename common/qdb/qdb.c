/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * qdb_read validates everything before it is used: cluster_bits is
 * range-checked before 1 << cluster_bits, every size and offset read
 * from the file is combined with checked arithmetic, every structure is
 * checked to lie inside the file and outside cluster 0, and all
 * structures are checked to be pairwise disjoint (sorted regions).  No
 * assert depends on file contents.
 *
 * Unknown header extensions, extra data records, bytes between 64 and
 * header_length and compatible feature bits are kept in the model and
 * written back by qdb_write, as the spec requires of writers.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "full-io.h"
#include "ispowerof2.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qdb-bits.h"
#include "qdb.h"
#include "rounding.h"

/* Loading more than this many bytes of bits for one bitmap is refused
 * (a 64 TiB disk at 64 KiB granularity needs 128 MiB).
 */
#define QDB_MAX_BITS_IN_MEMORY (UINT64_C (1) << 30)

/*----------------------------------------------------------------------
 * I/O backends.
 */

int
qdb_io_init_fd (struct qdb_io *io, int *fd, const char *name)
{
  struct stat st;

  if (fstat (*fd, &st) == -1) {
    qad_error ("%s: fstat: %m", name);
    return -1;
  }
  io->opaque = fd;
  io->name = name;
  io->size = st.st_size;
  io->pread = fd_io_pread;
  io->pwrite = fd_io_pwrite;
  io->sync = fd_io_sync;
  return 0;
}

static int
mem_pread (void *opaque, void *buf, size_t count, uint64_t offset)
{
  struct qdb_membuf *mb = opaque;

  if (!range_within (offset, count, mb->size)) {
    errno = EIO;
    return -1;
  }
  memcpy (buf, mb->data + offset, count);
  return 0;
}

static int
mem_pwrite (void *opaque, const void *buf, size_t count, uint64_t offset)
{
  struct qdb_membuf *mb = opaque;
  uint64_t end;

  if (ADD_OVERFLOW (offset, count, &end) || end > SIZE_MAX / 2) {
    errno = EFBIG;
    return -1;
  }
  if (end > mb->alloc) {
    size_t n = end * 2;
    uint8_t *p = realloc (mb->data, n);
    if (!p)
      return -1;
    memset (p + mb->alloc, 0, n - mb->alloc);
    mb->data = p;
    mb->alloc = n;
  }
  memcpy (mb->data + offset, buf, count);
  if (end > mb->size)
    mb->size = end;
  return 0;
}

static int
mem_sync (void *opaque)
{
  return 0;
}

void
qdb_io_init_mem (struct qdb_io *io, struct qdb_membuf *mb, const char *name)
{
  io->opaque = mb;
  io->name = name;
  io->size = mb->size;
  io->pread = mem_pread;
  io->pwrite = mem_pwrite;
  io->sync = mem_sync;
}

static int
io_pread (struct qdb_io *io, void *buf, size_t count, uint64_t offset,
          const char *what)
{
  if (io->pread (io->opaque, buf, count, offset) == -1) {
    qad_error ("%s: reading %s (%zu bytes at offset %" PRIu64 "): %m",
               io->name, what, count, offset);
    return -1;
  }
  return 0;
}

static int
io_pwrite (struct qdb_io *io, const void *buf, size_t count, uint64_t offset,
           const char *what)
{
  if (io->pwrite (io->opaque, buf, count, offset) == -1) {
    qad_error ("%s: writing %s (%zu bytes at offset %" PRIu64 "): %m",
               io->name, what, count, offset);
    return -1;
  }
  if (offset + count > io->size)
    io->size = offset + count;
  return 0;
}

static int
io_sync (struct qdb_io *io)
{
  if (io->sync (io->opaque) == -1) {
    qad_error ("%s: fdatasync: %m", io->name);
    return -1;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * The model.
 */

static void
free_bitmap (struct qdb_bitmap *bm)
{
  free (bm->name);
  free (bm->table);
  free (bm->extra_data);
  free (bm->bits);
}

void
qdb_free (struct qdb_file *qdb)
{
  size_t i;

  if (!qdb)
    return;
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    free_bitmap (&qdb->bitmaps[i]);
  free (qdb->bitmaps);
  for (i = 0; i < qdb->nr_exts; ++i)
    free (qdb->exts[i].data);
  free (qdb->exts);
  free (qdb->feature_names);
  free (qdb->header_tail);
  free (qdb);
}

struct qdb_file *
qdb_new (const char *name, unsigned cluster_bits)
{
  struct qdb_file *qdb;

  if (cluster_bits < QDB_MIN_CLUSTER_BITS ||
      cluster_bits > QDB_MAX_CLUSTER_BITS) {
    qad_error ("%s: cluster_bits %u out of range (%d..%d)",
               name, cluster_bits, QDB_MIN_CLUSTER_BITS, QDB_MAX_CLUSTER_BITS);
    errno = EINVAL;
    return NULL;
  }
  qdb = calloc (1, sizeof *qdb);
  if (!qdb) {
    qad_error ("%s: calloc: %m", name);
    return NULL;
  }
  qdb->name = name;
  qdb->cluster_bits = cluster_bits;
  qdb->cluster_size = UINT32_C (1) << cluster_bits;
  qdb->header_length = QDB_HEADER_LENGTH;
  return qdb;
}

bool
qdb_name_ok (const char *file, const char *name)
{
  size_t i, n = strlen (name);

  if (n < 1 || n > QDB_MAX_NAME_SIZE) {
    qad_error ("%s: bitmap name size %zu out of range (1..%d)",
               file, n, QDB_MAX_NAME_SIZE);
    return false;
  }
  for (i = 0; i < n; ++i) {
    unsigned char c = name[i];
    if (c <= ' ' || c >= 0x7f || c == '/' || c == ':') {
      qad_error ("%s: bitmap name \"%s\": character 0x%02x is not allowed "
                 "(printable ASCII except space, '/' and ':')",
                 file, name, c);
      return false;
    }
  }
  return true;
}

struct qdb_bitmap *
qdb_find_bitmap (struct qdb_file *qdb, const char *name)
{
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (strcmp (qdb->bitmaps[i].name, name) == 0)
      return &qdb->bitmaps[i];
  return NULL;
}

/* Compute nr_granules and table_size; false when out of range. */
static bool
bitmap_geometry (const struct qdb_file *qdb, uint64_t disk_size,
                 uint64_t granularity, uint64_t *nr_granules,
                 uint64_t *table_size)
{
  uint64_t bits_per_cluster = (uint64_t) qdb->cluster_size * 8;

  *nr_granules = div_round_up (disk_size, granularity);
  *table_size = div_round_up (*nr_granules, bits_per_cluster);
  return *table_size <= UINT32_MAX;
}

static int
alloc_bits (struct qdb_file *qdb, struct qdb_bitmap *bm)
{
  uint64_t len = (uint64_t) bm->table_size * qdb->cluster_size;

  if (len > QDB_MAX_BITS_IN_MEMORY) {
    qad_error ("%s: bitmap \"%s\": %" PRIu64 " bytes of bits is more than "
               "this implementation loads (%" PRIu64 "); use a larger "
               "granularity", qdb->name, bm->name, len,
               QDB_MAX_BITS_IN_MEMORY);
    errno = ENOMEM;
    return -1;
  }
  free (bm->bits);
  bm->bits = calloc (len ? len : 1, 1);
  if (!bm->bits) {
    qad_error ("%s: bitmap \"%s\": calloc: %m", qdb->name, bm->name);
    return -1;
  }
  bm->bits_len = len;
  return 0;
}

int
qdb_add_bitmap (struct qdb_file *qdb, const char *name,
                uint64_t granularity, uint64_t disk_size, uint16_t flags)
{
  struct qdb_bitmap *bms, *bm;
  uint64_t nr_granules, table_size;

  if (!qdb_name_ok (qdb->name, name)) {
    errno = EINVAL;
    return -1;
  }
  if (qdb_find_bitmap (qdb, name)) {
    qad_error ("%s: bitmap \"%s\" already exists", qdb->name, name);
    errno = EEXIST;
    return -1;
  }
  if (qdb->nr_bitmaps >= QDB_MAX_BITMAPS) {
    qad_error ("%s: too many bitmaps (at most %d)", qdb->name,
               QDB_MAX_BITMAPS);
    errno = ENOSPC;
    return -1;
  }
  if (!is_power_of_2 (granularity) || granularity < QDB_MIN_GRANULARITY ||
      granularity > QDB_MAX_GRANULARITY) {
    qad_error ("%s: bitmap \"%s\": granularity %" PRIu64 " is not a power "
               "of 2 between %d and %" PRIu64, qdb->name, name, granularity,
               QDB_MIN_GRANULARITY, QDB_MAX_GRANULARITY);
    errno = EINVAL;
    return -1;
  }
  if (disk_size > QDB_MAX_DISK_SIZE ||
      !bitmap_geometry (qdb, disk_size, granularity, &nr_granules,
                        &table_size)) {
    qad_error ("%s: bitmap \"%s\": disk size %" PRIu64 " too large for "
               "granularity %" PRIu64, qdb->name, name, disk_size,
               granularity);
    errno = EFBIG;
    return -1;
  }
  if (flags & ~QDB_FLAGS_KNOWN) {
    qad_error ("%s: bitmap \"%s\": unknown flags 0x%x", qdb->name, name,
               flags);
    errno = EINVAL;
    return -1;
  }

  bms = realloc (qdb->bitmaps, (qdb->nr_bitmaps + 1) * sizeof *bms);
  if (!bms) {
    qad_error ("%s: realloc: %m", qdb->name);
    return -1;
  }
  qdb->bitmaps = bms;
  bm = &bms[qdb->nr_bitmaps];
  memset (bm, 0, sizeof *bm);
  bm->name = strdup (name);
  bm->name_size = strlen (name);
  bm->flags = flags;
  bm->granularity = granularity;
  bm->disk_size = disk_size;
  bm->nr_granules = nr_granules;
  bm->table_size = table_size;
  bm->table = calloc (table_size ? table_size : 1, sizeof (uint64_t));
  if (!bm->name || !bm->table || alloc_bits (qdb, bm) == -1) {
    if (!bm->name || !bm->table)
      qad_error ("%s: calloc: %m", qdb->name);
    free_bitmap (bm);
    return -1;
  }
  return qdb->nr_bitmaps++;
}

int
qdb_remove_bitmap (struct qdb_file *qdb, size_t i)
{
  if (i >= qdb->nr_bitmaps) {
    errno = EINVAL;
    return -1;
  }
  free_bitmap (&qdb->bitmaps[i]);
  memmove (&qdb->bitmaps[i], &qdb->bitmaps[i + 1],
           (qdb->nr_bitmaps - i - 1) * sizeof qdb->bitmaps[0]);
  qdb->nr_bitmaps--;
  return 0;
}

void
qdb_describe_features (const struct qdb_file *qdb, int type, uint64_t bits,
                       char *buf, size_t len)
{
  size_t used = 0;
  unsigned b;
  size_t i;

  buf[0] = '\0';
  for (b = 0; b < 64; ++b) {
    const char *name = NULL;
    int r;

    if (!(bits & (UINT64_C (1) << b)))
      continue;
    for (i = 0; i < qdb->nr_feature_names; ++i)
      if (qdb->feature_names[i].type == type &&
          qdb->feature_names[i].bit == b)
        name = qdb->feature_names[i].name;
    r = snprintf (buf + used, len - used, "%sbit %u%s%s%s",
                  used ? ", " : "", b,
                  name ? " (" : "", name ? name : "", name ? ")" : "");
    if (r < 0 || (size_t) r >= len - used)
      return;
    used += r;
  }
}

/*----------------------------------------------------------------------
 * Reading and validating.
 */

enum region_kind { R_HEADER, R_DIRECTORY, R_TABLE, R_DATA, R_REGION_MAP };

struct region {
  uint64_t start, end;          /* [start, end), cluster-aligned */
  enum region_kind kind;
  size_t bitmap;
  uint64_t entry;
};

static int
compare_regions (const void *a, const void *b)
{
  const struct region *ra = a, *rb = b;

  return ra->start < rb->start ? -1 : ra->start > rb->start;
}

static void
describe_region (const struct qdb_file *qdb, const struct region *r,
                 char *buf, size_t len)
{
  switch (r->kind) {
  case R_HEADER:
    snprintf (buf, len, "the header (cluster 0)");
    break;
  case R_DIRECTORY:
    snprintf (buf, len, "the bitmap directory at offset %" PRIu64, r->start);
    break;
  case R_TABLE:
    snprintf (buf, len, "bitmap \"%s\"'s table at offset %" PRIu64,
              qdb->bitmaps[r->bitmap].name, r->start);
    break;
  case R_DATA:
    snprintf (buf, len, "bitmap \"%s\"'s data cluster %" PRIu64
              " at offset %" PRIu64,
              qdb->bitmaps[r->bitmap].name, r->entry, r->start);
    break;
  case R_REGION_MAP:
    snprintf (buf, len, "the region map at offset %" PRIu64, r->start);
    break;
  }
}

static int
parse_extensions (struct qdb_file *qdb, const uint8_t *c0)
{
  uint64_t off = qdb->header_length;
  const uint64_t cs = qdb->cluster_size;
  bool seen_names = false;

  for (;;) {
    uint32_t type, len;
    uint64_t padded, end;

    if (!range_within (off, 8, cs)) {
      qad_error ("%s: header extensions: no end marker inside cluster 0 "
                 "(next extension at offset %" PRIu64 ", cluster_size %"
                 PRIu64 ")", qdb->name, off, cs);
      return -1;
    }
    type = load_be32 (c0 + off);
    len = load_be32 (c0 + off + 4);
    if (type == QDB_EXT_END) {
      if (len != 0) {
        qad_error ("%s: header extension end marker at offset %" PRIu64
                   " has length %" PRIu32 " (must be 0)",
                   qdb->name, off, len);
        return -1;
      }
      return 0;
    }
    padded = ROUND_UP ((uint64_t) len, 8);
    if (ADD_OVERFLOW (off + 8, padded, &end) || end > cs) {
      qad_error ("%s: header extension 0x%08" PRIx32 " at offset %" PRIu64
                 ": length %" PRIu32 " runs past cluster 0 (cluster_size %"
                 PRIu64 ")", qdb->name, type, off, len, cs);
      return -1;
    }
    if (type == QDB_EXT_REGION_MAP) {
      const uint8_t *d = c0 + off + 8;
      if (qdb->region_size || len != QDB_REGION_MAP_EXT_LEN) {
        qad_error ("%s: header extension 0x%08" PRIx32 " (region map): %s "
                   "(length %" PRIu32 ", must be %d)", qdb->name, type,
                   qdb->region_size ? "appears twice" : "wrong length", len,
                   QDB_REGION_MAP_EXT_LEN);
        return -1;
      }
      qdb->region_size = load_be64 (d);
      qdb->region_map_offset = load_be64 (d + 8);
      qdb->region_map_size = load_be64 (d + 16);
      if (qdb->region_size == 0) {
        qad_error ("%s: region map: region_size 0 is invalid", qdb->name);
        return -1;
      }
    }
    else if (type == QDB_EXT_FEATURE_NAMES) {
      size_t i, n;

      if (seen_names) {
        qad_error ("%s: header extension 0x%08" PRIx32 " (feature name "
                   "table) appears twice", qdb->name, type);
        return -1;
      }
      seen_names = true;
      if (len % QDB_FEATURE_NAME_ENTRY != 0) {
        qad_error ("%s: feature name table: length %" PRIu32 " is not a "
                   "multiple of %d", qdb->name, len, QDB_FEATURE_NAME_ENTRY);
        return -1;
      }
      n = len / QDB_FEATURE_NAME_ENTRY;
      qdb->feature_names = calloc (n ? n : 1, sizeof *qdb->feature_names);
      if (!qdb->feature_names) {
        qad_error ("%s: calloc: %m", qdb->name);
        return -1;
      }
      for (i = 0; i < n; ++i) {
        const uint8_t *e = c0 + off + 8 + i * QDB_FEATURE_NAME_ENTRY;
        struct qdb_feature_name *fn = &qdb->feature_names[i];
        fn->type = e[0];
        fn->bit = e[1];
        memcpy (fn->name, e + 2, 46);
        fn->name[46] = '\0';
      }
      qdb->nr_feature_names = n;
    }
    else {
      struct qdb_record *exts, *x;

      exts = realloc (qdb->exts, (qdb->nr_exts + 1) * sizeof *exts);
      if (!exts) {
        qad_error ("%s: realloc: %m", qdb->name);
        return -1;
      }
      qdb->exts = exts;
      x = &exts[qdb->nr_exts];
      x->type = type;
      x->length = len;
      x->data = malloc (len ? len : 1);
      if (!x->data) {
        qad_error ("%s: malloc: %m", qdb->name);
        return -1;
      }
      memcpy (x->data, c0 + off + 8, len);
      qdb->nr_exts++;
    }
    off = end;
  }
}

/* Check that extra data is a well-formed sequence of typed records. */
static int
check_extra_data (struct qdb_file *qdb, size_t i, const uint8_t *p,
                  uint32_t size)
{
  uint64_t off = 0;

  while (off < size) {
    uint32_t type, len;
    uint64_t end;

    if (!range_within (off, 8, size)) {
      qad_error ("%s: directory entry %zu: extra data record at offset %"
                 PRIu64 " is truncated (extra_data_size %" PRIu32 ")",
                 qdb->name, i, off, size);
      return -1;
    }
    type = load_be32 (p + off);
    len = load_be32 (p + off + 4);
    if (ADD_OVERFLOW (off + 8, ROUND_UP ((uint64_t) len, 8), &end) ||
        end > size) {
      qad_error ("%s: directory entry %zu: extra data record type 0x%08"
                 PRIx32 " length %" PRIu32 " runs past extra_data_size %"
                 PRIu32, qdb->name, i, type, len, size);
      return -1;
    }
    off = end;
  }
  return 0;
}

static int
parse_directory (struct qdb_file *qdb, const uint8_t *dir,
                 uint32_t nb_bitmaps, uint64_t file_size)
{
  uint64_t pos = 0;
  const uint64_t cs = qdb->cluster_size;
  size_t i, j;

  qdb->bitmaps = calloc (nb_bitmaps ? nb_bitmaps : 1, sizeof *qdb->bitmaps);
  if (!qdb->bitmaps) {
    qad_error ("%s: calloc: %m", qdb->name);
    return -1;
  }

  for (i = 0; i < nb_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    const uint8_t *e = dir + pos;
    uint64_t entry_size, nr_granules, table_size;
    uint32_t extra;
    uint16_t name_size;

    if (!range_within (pos, QDB_DIR_ENTRY_FIXED, qdb->dir_size)) {
      qad_error ("%s: directory entry %zu at directory offset %" PRIu64
                 " is truncated (bitmap_directory_size %" PRIu32 ")",
                 qdb->name, i, pos, qdb->dir_size);
      return -1;
    }
    bm->table_offset = load_be64 (e + 0);
    bm->disk_size = load_be64 (e + 8);
    bm->table_size = load_be32 (e + 16);
    bm->granularity = load_be32 (e + 20);
    bm->flags = load_be16 (e + 24);
    name_size = load_be16 (e + 26);
    extra = load_be32 (e + 36);
    qdb->nr_bitmaps = i + 1;    /* so that qdb_free frees it */

    if (name_size < 1 || name_size > QDB_MAX_NAME_SIZE) {
      qad_error ("%s: directory entry %zu: name_size %" PRIu16
                 " out of range (1..%d)", qdb->name, i, name_size,
                 QDB_MAX_NAME_SIZE);
      return -1;
    }
    if (extra % 8 != 0 || extra > QDB_MAX_EXTRA_DATA_SIZE) {
      qad_error ("%s: directory entry %zu: extra_data_size %" PRIu32
                 " is not a multiple of 8 at most %d",
                 qdb->name, i, extra, QDB_MAX_EXTRA_DATA_SIZE);
      return -1;
    }
    entry_size = ROUND_UP ((uint64_t) QDB_DIR_ENTRY_FIXED + extra + name_size,
                           8);
    if (!range_within (pos, entry_size, qdb->dir_size)) {
      qad_error ("%s: directory entry %zu (size %" PRIu64 ") runs past "
                 "bitmap_directory_size %" PRIu32,
                 qdb->name, i, entry_size, qdb->dir_size);
      return -1;
    }
    bm->name_size = name_size;
    bm->name = malloc (name_size + 1);
    if (!bm->name) {
      qad_error ("%s: malloc: %m", qdb->name);
      return -1;
    }
    memcpy (bm->name, e + QDB_DIR_ENTRY_FIXED + extra, name_size);
    bm->name[name_size] = '\0';
    if (memchr (bm->name, '\0', name_size)) {
      qad_error ("%s: directory entry %zu: name contains a NUL byte",
                 qdb->name, i);
      return -1;
    }
    for (j = 0; j < i; ++j)
      if (strcmp (qdb->bitmaps[j].name, bm->name) == 0) {
        qad_error ("%s: directory entry %zu: bitmap name \"%s\" is used "
                   "twice", qdb->name, i, bm->name);
        return -1;
      }
    if (check_extra_data (qdb, i, e + QDB_DIR_ENTRY_FIXED, extra) == -1)
      return -1;
    bm->extra_data_size = extra;
    bm->extra_data = malloc (extra ? extra : 1);
    if (!bm->extra_data) {
      qad_error ("%s: malloc: %m", qdb->name);
      return -1;
    }
    memcpy (bm->extra_data, e + QDB_DIR_ENTRY_FIXED, extra);

    if (bm->flags & ~QDB_FLAGS_KNOWN) {
      qad_error ("%s: bitmap \"%s\": flags 0x%04" PRIx16 " has reserved "
                 "bits set (0x%04x)", qdb->name, bm->name, bm->flags,
                 bm->flags & ~QDB_FLAGS_KNOWN);
      return -1;
    }
    if (!is_power_of_2 (bm->granularity) ||
        bm->granularity < QDB_MIN_GRANULARITY ||
        bm->granularity > QDB_MAX_GRANULARITY) {
      qad_error ("%s: bitmap \"%s\": granularity %" PRIu64 " is not a "
                 "power of 2 between %d and %" PRIu64, qdb->name, bm->name,
                 bm->granularity, QDB_MIN_GRANULARITY, QDB_MAX_GRANULARITY);
      return -1;
    }
    if (bm->disk_size > QDB_MAX_DISK_SIZE) {
      qad_error ("%s: bitmap \"%s\": disk_size %" PRIu64 " too large",
                 qdb->name, bm->name, bm->disk_size);
      return -1;
    }
    if (!bitmap_geometry (qdb, bm->disk_size, bm->granularity,
                          &nr_granules, &table_size) ||
        table_size != bm->table_size) {
      qad_error ("%s: bitmap \"%s\": bitmap_table_size %" PRIu32 " does not "
                 "match disk_size %" PRIu64 ", granularity %" PRIu64
                 " and cluster_size %" PRIu64 " (expected %" PRIu64 ")",
                 qdb->name, bm->name, bm->table_size, bm->disk_size,
                 bm->granularity, cs, table_size);
      return -1;
    }
    bm->nr_granules = nr_granules;
    if (bm->table_size > 0) {
      if (!IS_ALIGNED (bm->table_offset, cs) || bm->table_offset < cs) {
        qad_error ("%s: bitmap \"%s\": bitmap_table_offset %" PRIu64
                   " is not a cluster-aligned offset past cluster 0 "
                   "(cluster_size %" PRIu64 ")",
                   qdb->name, bm->name, bm->table_offset, cs);
        return -1;
      }
      if (!range_within (bm->table_offset, (uint64_t) bm->table_size * 8,
                         file_size)) {
        qad_error ("%s: bitmap \"%s\": bitmap table at offset %" PRIu64
                   " (%" PRIu32 " entries) lies past the end of the file "
                   "(%" PRIu64 " bytes)", qdb->name, bm->name,
                   bm->table_offset, bm->table_size, file_size);
        return -1;
      }
    }
    pos += entry_size;
  }
  if (pos != qdb->dir_size) {
    qad_error ("%s: bitmap_directory_size %" PRIu32 " does not match the "
               "%" PRIu32 " entries (%" PRIu64 " bytes)",
               qdb->name, qdb->dir_size, nb_bitmaps, pos);
    return -1;
  }
  return 0;
}

/* What the tables (each entry: the host copy, the overlap check's
 * region) and, with LOAD_BITS, the bits of every bitmap will take,
 * against qad_limits.max_qdb_bytes: refused before any of it is
 * allocated, whatever sizes the directory declares.
 */
static int
check_memory (struct qdb_file *qdb, bool load_bits)
{
  const uint64_t per_entry = sizeof (uint64_t) + sizeof (struct region);
  uint64_t total = 0, t;
  size_t i;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];

    /* table_size < 2^32 and both factors < 2^32: no overflow. */
    t = (uint64_t) bm->table_size * per_entry;
    if (load_bits)
      t += (uint64_t) bm->table_size * qdb->cluster_size;
    if (ADD_OVERFLOW (total, t, &total) || total > qad_limits.max_qdb_bytes) {
      qad_error ("%s: bitmap \"%s\" (bitmap_table_size %" PRIu32
                 ", cluster_size %" PRIu32 ") brings the memory the file "
                 "needs past the limit of %" PRIu64 " bytes (raise it "
                 "with max-qdb-size=)", qdb->name, bm->name,
                 bm->table_size, qdb->cluster_size,
                 qad_limits.max_qdb_bytes);
      errno = EFBIG;
      return -1;
    }
  }
  return 0;
}

static int
read_tables (struct qdb_io *io, struct qdb_file *qdb, uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;
  size_t i;
  uint64_t k;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    size_t n = bm->table_size;
    uint8_t *raw;

    bm->table = calloc (n ? n : 1, sizeof (uint64_t));
    raw = malloc (n ? n * 8 : 1);
    if (!bm->table || !raw) {
      free (raw);
      qad_error ("%s: bitmap \"%s\": table of %zu entries: %m",
                 qdb->name, bm->name, n);
      errno = ENOMEM;
      return -1;
    }
    if (n && io_pread (io, raw, n * 8, bm->table_offset,
                       "a bitmap table") == -1) {
      free (raw);
      return -1;
    }
    for (k = 0; k < n; ++k) {
      uint64_t e = load_be64 (raw + k * 8);
      uint64_t off = e & QDB_ENTRY_OFFSET_MASK;

      bm->table[k] = e;
      if (e & QDB_ENTRY_RESERVED_MASK) {
        qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 " = 0x%016"
                   PRIx64 " has reserved bits set (or an unaligned offset)",
                   qdb->name, bm->name, k, e);
        free (raw);
        return -1;
      }
      if (off == 0)
        continue;
      if (e & QDB_ENTRY_ALL_ONES) {
        qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 " = 0x%016"
                   PRIx64 " has both an offset and ALL_ONES",
                   qdb->name, bm->name, k, e);
        free (raw);
        return -1;
      }
      if (!IS_ALIGNED (off, cs) || off < cs ||
          !range_within (off, cs, file_size)) {
        qad_error ("%s: bitmap \"%s\": table entry %" PRIu64 ": data "
                   "cluster offset %" PRIu64 " is not cluster-aligned, is "
                   "in cluster 0 or lies past the end of the file (%"
                   PRIu64 " bytes, cluster_size %" PRIu64 ")",
                   qdb->name, bm->name, k, off, file_size, cs);
        free (raw);
        return -1;
      }
    }
    free (raw);
  }
  return 0;
}

static int
check_overlaps (struct qdb_file *qdb, uint64_t file_size)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE struct region *r = NULL;
  size_t n = 0, max = 3, i;
  uint64_t k, covered = 0, file_clusters;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    max += 1;
    for (k = 0; k < qdb->bitmaps[i].table_size; ++k)
      if (qdb->bitmaps[i].table[k] & QDB_ENTRY_OFFSET_MASK)
        max++;
  }
  r = malloc (max * sizeof *r);
  if (!r) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  r[n++] = (struct region) { 0, cs, R_HEADER, 0, 0 };
  if (qdb->region_size)
    r[n++] = (struct region) { qdb->region_map_offset,
                               qdb->region_map_offset +
                               ROUND_UP (qdb->region_map_size, cs),
                               R_REGION_MAP, 0, 0 };
  if (qdb->dir_size)
    r[n++] = (struct region) { qdb->dir_offset,
                               qdb->dir_offset + ROUND_UP ((uint64_t)
                                                           qdb->dir_size, cs),
                               R_DIRECTORY, 0, 0 };
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    if (bm->table_size)
      r[n++] = (struct region) { bm->table_offset,
                                 bm->table_offset +
                                 ROUND_UP ((uint64_t) bm->table_size * 8, cs),
                                 R_TABLE, i, 0 };
    for (k = 0; k < bm->table_size; ++k) {
      uint64_t off = bm->table[k] & QDB_ENTRY_OFFSET_MASK;
      if (off)
        r[n++] = (struct region) { off, off + cs, R_DATA, i, k };
    }
  }
  qsort (r, n, sizeof *r, compare_regions);
  for (i = 0; i < n; ++i) {
    if (i > 0 && r[i].start < r[i - 1].end) {
      char a[256], b[256];
      describe_region (qdb, &r[i - 1], a, sizeof a);
      describe_region (qdb, &r[i], b, sizeof b);
      qad_error ("%s: %s overlaps %s", qdb->name, a, b);
      errno = EINVAL;
      return -1;
    }
    covered += (r[i].end - r[i].start) / cs;
  }
  file_clusters = div_round_up (file_size, cs);
  qdb->leaked_clusters = file_clusters > covered ? file_clusters - covered : 0;
  return 0;
}

int
qdb_load_bits (struct qdb_io *io, struct qdb_file *qdb,
               struct qdb_bitmap *bm)
{
  const uint64_t cs = qdb->cluster_size;
  uint64_t k, n;

  if (alloc_bits (qdb, bm) == -1)
    return -1;
  for (k = 0; k < bm->table_size; ++k) {
    uint64_t e = bm->table[k];
    uint64_t off = e & QDB_ENTRY_OFFSET_MASK;
    uint8_t *p = bm->bits + k * cs;

    if (off) {
      if (io_pread (io, p, cs, off, "a bitmap data cluster") == -1)
        return -1;
    }
    else if (e & QDB_ENTRY_ALL_ONES)
      memset (p, 0xff, cs);
  }
  /* Bits past nr_granules are ignored: keep them 0 in memory. */
  for (n = bm->nr_granules; n < bm->bits_len * 8 && (n & 7); ++n)
    bit_clear (bm->bits, n);
  if (n < bm->bits_len * 8)
    memset (bm->bits + (n >> 3), 0, bm->bits_len - (n >> 3));
  return 0;
}

uint64_t
qdb_region_map_size (uint64_t disk_size, uint64_t region_size)
{
  uint64_t regions;

  if (region_size == 0)
    return 0;
  regions = disk_size / region_size + (disk_size % region_size != 0);
  return regions / 8 + 1;
}

/* The region map extension and the feature bit go together; the map
 * lies inside the file, cluster-aligned, and covers every bitmap.
 */
static int
check_region_map (struct qdb_file *qdb, uint64_t file_size)
{
  const bool bit = qdb->incompat & QDB_INCOMPAT_REGION_MAP;
  size_t i;

  if (bit != (qdb->region_size != 0)) {
    qad_error ("%s: incompatible feature bit 0 (region map) is %s but the "
               "region map header extension is %s", qdb->name,
               bit ? "set" : "clear", qdb->region_size ? "present" : "absent");
    return -1;
  }
  if (!bit)
    return 0;
  if (!is_power_of_2 (qdb->region_size) ||
      qdb->region_size < QDB_MIN_REGION_SIZE ||
      qdb->region_size > QDB_MAX_REGION_SIZE) {
    qad_error ("%s: region map: region_size %" PRIu64 " is not a power of 2 "
               "from %" PRIu64 " to %" PRIu64, qdb->name, qdb->region_size,
               QDB_MIN_REGION_SIZE, QDB_MAX_REGION_SIZE);
    return -1;
  }
  if (qdb->region_map_size == 0 ||
      qdb->region_map_size > QDB_MAX_REGION_MAP_SIZE ||
      !IS_ALIGNED (qdb->region_map_offset, qdb->cluster_size) ||
      qdb->region_map_offset < qdb->cluster_size ||
      !range_within (qdb->region_map_offset,
                     ROUND_UP (qdb->region_map_size, qdb->cluster_size),
                     file_size)) {
    qad_error ("%s: region map: offset %" PRIu64 " size %" PRIu64 " is "
               "invalid (1..%d bytes in whole clusters inside the file of %"
               PRIu64 " bytes, not in cluster 0)", qdb->name,
               qdb->region_map_offset, qdb->region_map_size,
               QDB_MAX_REGION_MAP_SIZE, file_size);
    return -1;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i)
    if (qdb_region_map_size (qdb->bitmaps[i].disk_size, qdb->region_size)
        > qdb->region_map_size) {
      qad_error ("%s: region map: size %" PRIu64 " does not cover bitmap "
                 "\"%s\" (disk size %" PRIu64 ", region_size %" PRIu64 ")",
                 qdb->name, qdb->region_map_size, qdb->bitmaps[i].name,
                 qdb->bitmaps[i].disk_size, qdb->region_size);
      return -1;
    }
  return 0;
}

/* OR every marked region into every enabled bitmap. */
static int
apply_region_map (struct qdb_io *io, struct qdb_file *qdb)
{
  CLEANUP_FREE uint8_t *map = malloc (qdb->region_map_size);
  size_t i;

  if (!map) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  if (io_pread (io, map, qdb->region_map_size, qdb->region_map_offset,
                "the region map") == -1)
    return -1;
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    uint64_t r, nr = qdb->region_map_size * 8, before;

    if (!(bm->flags & QDB_FLAG_ENABLED) || bm->nr_granules == 0)
      continue;
    before = qdb_dirty_granules (bm);
    for (r = 0; r < nr && r * qdb->region_size < bm->disk_size; ++r) {
      uint64_t end;
      if (!bit_test (map, r))
        continue;
      end = MIN (bm->disk_size, (r + 1) * qdb->region_size);
      qdb_bits_set_range (bm->bits, r * qdb->region_size / bm->granularity,
                          (end - 1) / bm->granularity);
    }
    qdb->region_recovered += qdb_dirty_granules (bm) - before;
  }
  return 0;
}

struct qdb_file *
qdb_read (struct qdb_io *io, bool load_bits)
{
  struct qdb_file *qdb = NULL;
  CLEANUP_FREE uint8_t *c0 = NULL;
  CLEANUP_FREE uint8_t *dir = NULL;
  uint8_t h[QDB_HEADER_LENGTH];
  uint64_t file_size = io->size, cs;
  uint32_t version, cluster_bits, nb_bitmaps;
  size_t i;

  if (file_size < QDB_HEADER_LENGTH) {
    qad_error ("%s: file size %" PRIu64 " is too small for a QDB header "
               "(%d bytes)", io->name, file_size, QDB_HEADER_LENGTH);
    errno = EINVAL;
    return NULL;
  }
  if (io_pread (io, h, sizeof h, 0, "the header") == -1)
    return NULL;
  if (memcmp (h, QDB_MAGIC, 4) != 0) {
    qad_error ("%s: magic %02x %02x %02x %02x is not QDB (51 44 42 00)",
               io->name, h[0], h[1], h[2], h[3]);
    errno = EINVAL;
    return NULL;
  }
  version = load_be32 (h + 4);
  if (version != QDB_VERSION) {
    qad_error ("%s: version %" PRIu32 " is not supported (only %d)",
               io->name, version, QDB_VERSION);
    errno = ENOTSUP;
    return NULL;
  }
  cluster_bits = load_be32 (h + 8);
  if (cluster_bits < QDB_MIN_CLUSTER_BITS ||
      cluster_bits > QDB_MAX_CLUSTER_BITS) {
    qad_error ("%s: cluster_bits %" PRIu32 " out of range (%d..%d)",
               io->name, cluster_bits,
               QDB_MIN_CLUSTER_BITS, QDB_MAX_CLUSTER_BITS);
    errno = EINVAL;
    return NULL;
  }
  qdb = qdb_new (io->name, cluster_bits);
  if (!qdb)
    return NULL;
  cs = qdb->cluster_size;
  qdb->file_size = file_size;

  if (file_size < cs) {
    qad_error ("%s: file size %" PRIu64 " is smaller than cluster 0 "
               "(cluster_size %" PRIu64 ")", io->name, file_size, cs);
    errno = EINVAL;
    goto err;
  }

  nb_bitmaps = load_be32 (h + 12);
  qdb->dir_offset = load_be64 (h + 16);
  qdb->header_length = load_be32 (h + 24);
  qdb->dir_size = load_be32 (h + 28);
  qdb->incompat = load_be64 (h + 32);
  qdb->compat = load_be64 (h + 40);
  qdb->autoclear = load_be64 (h + 48);

  if (qdb->header_length < QDB_HEADER_LENGTH ||
      qdb->header_length % 8 != 0 || qdb->header_length > cs - 8) {
    qad_error ("%s: header_length %" PRIu32 " is invalid (a multiple of 8, "
               "at least %d, at most cluster_size - 8 = %" PRIu64 ")",
               io->name, qdb->header_length, QDB_HEADER_LENGTH, cs - 8);
    errno = EINVAL;
    goto err;
  }

  c0 = malloc (cs);
  if (!c0) {
    qad_error ("%s: malloc: %m", io->name);
    goto err;
  }
  if (io_pread (io, c0, cs, 0, "cluster 0") == -1)
    goto err;
  if (qdb->header_length > QDB_HEADER_LENGTH) {
    qdb->header_tail = malloc (qdb->header_length - QDB_HEADER_LENGTH);
    if (!qdb->header_tail) {
      qad_error ("%s: malloc: %m", io->name);
      goto err;
    }
    memcpy (qdb->header_tail, c0 + QDB_HEADER_LENGTH,
            qdb->header_length - QDB_HEADER_LENGTH);
  }
  if (parse_extensions (qdb, c0) == -1) {
    errno = EINVAL;
    goto err;
  }

  /* Feature bits, after the name table so that we can name them. */
  if (qdb->incompat & ~QDB_INCOMPAT_KNOWN) {
    char names[512];
    qdb_describe_features (qdb, 0, qdb->incompat & ~QDB_INCOMPAT_KNOWN,
                           names, sizeof names);
    qad_error ("%s: incompatible_features 0x%016" PRIx64 ": unknown "
               "incompatible feature %s: refusing to open",
               io->name, qdb->incompat, names);
    errno = ENOTSUP;
    goto err;
  }

  if (nb_bitmaps > QDB_MAX_BITMAPS) {
    qad_error ("%s: nb_bitmaps %" PRIu32 " out of range (at most %d)",
               io->name, nb_bitmaps, QDB_MAX_BITMAPS);
    errno = EINVAL;
    goto err;
  }
  if ((nb_bitmaps == 0) != (qdb->dir_offset == 0) ||
      (nb_bitmaps == 0) != (qdb->dir_size == 0)) {
    qad_error ("%s: nb_bitmaps %" PRIu32 ", bitmap_directory_offset %"
               PRIu64 " and bitmap_directory_size %" PRIu32 " disagree "
               "(all zero or all non-zero)", io->name, nb_bitmaps,
               qdb->dir_offset, qdb->dir_size);
    errno = EINVAL;
    goto err;
  }
  if (nb_bitmaps > 0) {
    if (!IS_ALIGNED (qdb->dir_offset, cs) || qdb->dir_offset < cs) {
      qad_error ("%s: bitmap_directory_offset %" PRIu64 " is not a "
                 "cluster-aligned offset past cluster 0 (cluster_size %"
                 PRIu64 ")", io->name, qdb->dir_offset, cs);
      errno = EINVAL;
      goto err;
    }
    if (qdb->dir_size > QDB_MAX_DIRECTORY_SIZE ||
        qdb->dir_size < (uint64_t) nb_bitmaps * QDB_DIR_ENTRY_FIXED) {
      qad_error ("%s: bitmap_directory_size %" PRIu32 " out of range "
                 "(%" PRIu64 "..%d for %" PRIu32 " bitmaps)",
                 io->name, qdb->dir_size,
                 (uint64_t) nb_bitmaps * QDB_DIR_ENTRY_FIXED,
                 QDB_MAX_DIRECTORY_SIZE, nb_bitmaps);
      errno = EINVAL;
      goto err;
    }
    if (!range_within (qdb->dir_offset, qdb->dir_size, file_size)) {
      qad_error ("%s: bitmap directory at offset %" PRIu64 " (size %"
                 PRIu32 ") lies past the end of the file (%" PRIu64
                 " bytes)", io->name, qdb->dir_offset, qdb->dir_size,
                 file_size);
      errno = EINVAL;
      goto err;
    }
    dir = malloc (qdb->dir_size);
    if (!dir) {
      qad_error ("%s: malloc: %m", io->name);
      goto err;
    }
    if (io_pread (io, dir, qdb->dir_size, qdb->dir_offset,
                  "the bitmap directory") == -1)
      goto err;
  }
  if (parse_directory (qdb, dir, nb_bitmaps, file_size) == -1) {
    errno = EINVAL;
    goto err;
  }
  if (check_memory (qdb, load_bits) == -1)
    goto err;
  if (check_region_map (qdb, file_size) == -1 ||
      read_tables (io, qdb, file_size) == -1 ||
      check_overlaps (qdb, file_size) == -1) {
    errno = EINVAL;
    goto err;
  }
  if (load_bits) {
    for (i = 0; i < qdb->nr_bitmaps; ++i)
      if (qdb_load_bits (io, qdb, &qdb->bitmaps[i]) == -1)
        goto err;
    if (qdb->region_size && apply_region_map (io, qdb) == -1)
      goto err;
  }
  return qdb;

 err:
  {
    int saved = errno;
    qdb_free (qdb);
    errno = saved;
  }
  return NULL;
}

/*----------------------------------------------------------------------
 * Writing.
 */

static size_t
put_record (uint8_t *p, uint32_t type, uint32_t len, const uint8_t *data)
{
  store_be32 (p, type);
  store_be32 (p + 4, len);
  if (len)
    memcpy (p + 8, data, len);
  return 8 + ROUND_UP ((size_t) len, 8);
}

/* Are the valid bits of data cluster K all SET (v=1) or all clear? */
static bool
cluster_uniform (const struct qdb_file *qdb, const struct qdb_bitmap *bm,
                 uint64_t k, bool v)
{
  uint64_t bits_per_cluster = (uint64_t) qdb->cluster_size * 8;
  uint64_t first = k * bits_per_cluster;
  uint64_t last = first + bits_per_cluster - 1;
  const uint8_t *p = bm->bits + k * qdb->cluster_size;
  size_t i;

  if (v) {
    if (last >= bm->nr_granules)
      last = bm->nr_granules - 1;
    return qdb_bits_all_set (bm->bits, first, last);
  }
  for (i = 0; i < qdb->cluster_size; ++i)
    if (p[i])
      return false;
  return true;
}

int
qdb_write (struct qdb_io *io, struct qdb_file *qdb, bool allocate_all)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE uint8_t *c0 = NULL;
  CLEANUP_FREE uint8_t *dir = NULL;
  CLEANUP_FREE uint8_t *tbl = NULL;
  uint64_t dir_size = 0, next, pos;
  size_t i, off, region_ext;
  uint64_t k;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    if (!qdb->bitmaps[i].bits) {
      qad_error ("%s: internal error: bitmap \"%s\" bits not loaded",
                 io->name, qdb->bitmaps[i].name);
      errno = EINVAL;
      return -1;
    }
    dir_size += ROUND_UP ((uint64_t) QDB_DIR_ENTRY_FIXED +
                          qdb->bitmaps[i].extra_data_size +
                          qdb->bitmaps[i].name_size, 8);
  }
  if (dir_size > QDB_MAX_DIRECTORY_SIZE) {
    qad_error ("%s: bitmap directory would be %" PRIu64 " bytes "
               "(at most %d)", io->name, dir_size, QDB_MAX_DIRECTORY_SIZE);
    errno = EFBIG;
    return -1;
  }

  /* Cluster 0. */
  c0 = calloc (1, cs);
  if (!c0) {
    qad_error ("%s: calloc: %m", io->name);
    return -1;
  }
  off = qdb->header_length;
  {
    uint64_t need = off + 8;    /* end marker */
    if (qdb->nr_feature_names)
      need += 8 + (uint64_t) qdb->nr_feature_names * QDB_FEATURE_NAME_ENTRY;
    for (i = 0; i < qdb->nr_exts; ++i)
      need += 8 + ROUND_UP ((uint64_t) qdb->exts[i].length, 8);
    if (qdb->region_size)
      need += 8 + QDB_REGION_MAP_EXT_LEN;
    if (need > cs) {
      qad_error ("%s: header and extensions (%" PRIu64 " bytes) do not fit "
                 "in cluster 0 (cluster_size %" PRIu64 ")",
                 io->name, need, cs);
      errno = EFBIG;
      return -1;
    }
  }
  memcpy (c0, QDB_MAGIC, 4);
  store_be32 (c0 + 4, QDB_VERSION);
  store_be32 (c0 + 8, qdb->cluster_bits);
  store_be32 (c0 + 12, qdb->nr_bitmaps);
  store_be32 (c0 + 24, qdb->header_length);
  store_be64 (c0 + 32, qdb->incompat);
  store_be64 (c0 + 40, qdb->compat);
  store_be64 (c0 + 48, qdb->autoclear);
  if (qdb->header_tail)
    memcpy (c0 + QDB_HEADER_LENGTH, qdb->header_tail,
            qdb->header_length - QDB_HEADER_LENGTH);
  if (qdb->nr_feature_names) {
    uint32_t len = qdb->nr_feature_names * QDB_FEATURE_NAME_ENTRY;
    store_be32 (c0 + off, QDB_EXT_FEATURE_NAMES);
    store_be32 (c0 + off + 4, len);
    for (i = 0; i < qdb->nr_feature_names; ++i) {
      uint8_t *e = c0 + off + 8 + i * QDB_FEATURE_NAME_ENTRY;
      e[0] = qdb->feature_names[i].type;
      e[1] = qdb->feature_names[i].bit;
      memcpy (e + 2, qdb->feature_names[i].name,
              strnlen (qdb->feature_names[i].name, 46));
    }
    off += 8 + len;
  }
  for (i = 0; i < qdb->nr_exts; ++i)
    off += put_record (c0 + off, qdb->exts[i].type, qdb->exts[i].length,
                       qdb->exts[i].data);
  /* The region map record is filled in below, once laid out. */
  region_ext = off;
  if (qdb->region_size)
    off += 8 + QDB_REGION_MAP_EXT_LEN;
  /* End marker: already zero. */

  /* Lay out the region map, directory, tables and data clusters. */
  next = cs;
  if (qdb->region_size) {
    uint8_t d[QDB_REGION_MAP_EXT_LEN];
    uint64_t msize = 1;
    CLEANUP_FREE uint8_t *zeroes = NULL;

    for (i = 0; i < qdb->nr_bitmaps; ++i)
      msize = MAX (msize, qdb_region_map_size (qdb->bitmaps[i].disk_size,
                                               qdb->region_size));
    if (msize > QDB_MAX_REGION_MAP_SIZE) {
      qad_error ("%s: region map would be %" PRIu64 " bytes (at most %d): "
                 "use larger regions", io->name, msize,
                 QDB_MAX_REGION_MAP_SIZE);
      errno = EFBIG;
      return -1;
    }
    qdb->region_map_offset = next;
    qdb->region_map_size = msize;
    next += ROUND_UP (msize, cs);
    store_be64 (d, qdb->region_size);
    store_be64 (d + 8, qdb->region_map_offset);
    store_be64 (d + 16, msize);
    put_record (c0 + region_ext, QDB_EXT_REGION_MAP, sizeof d, d);
    zeroes = calloc (1, ROUND_UP (msize, cs));
    if (!zeroes) {
      qad_error ("%s: calloc: %m", io->name);
      return -1;
    }
    if (io_pwrite (io, zeroes, ROUND_UP (msize, cs), qdb->region_map_offset,
                   "the region map") == -1)
      return -1;
    qdb->incompat |= QDB_INCOMPAT_REGION_MAP;
  }
  else
    qdb->incompat &= ~QDB_INCOMPAT_REGION_MAP;
  store_be64 (c0 + 32, qdb->incompat);
  if (qdb->nr_bitmaps) {
    qdb->dir_offset = next;
    qdb->dir_size = dir_size;
    next += ROUND_UP (dir_size, cs);
  }
  else {
    qdb->dir_offset = 0;
    qdb->dir_size = 0;
  }
  store_be64 (c0 + 16, qdb->dir_offset);
  store_be32 (c0 + 28, qdb->dir_size);

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];

    if (bm->table_size == 0) {
      bm->table_offset = 0;
      continue;
    }
    bm->table_offset = next;
    next += ROUND_UP ((uint64_t) bm->table_size * 8, cs);
    for (k = 0; k < bm->table_size; ++k) {
      if (!allocate_all && cluster_uniform (qdb, bm, k, false))
        bm->table[k] = 0;
      else if (!allocate_all && cluster_uniform (qdb, bm, k, true))
        bm->table[k] = QDB_ENTRY_ALL_ONES;
      else {
        bm->table[k] = next;
        next += cs;
      }
    }
  }

  /* Write the data clusters and tables first, then the directory, the
   * header last.  (The file is new, so the order only matters for
   * readers that race with us, of which there are none.)
   */
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    uint64_t tlen = ROUND_UP ((uint64_t) bm->table_size * 8, cs);

    if (bm->table_size == 0)
      continue;
    for (k = 0; k < bm->table_size; ++k) {
      uint64_t doff = bm->table[k] & QDB_ENTRY_OFFSET_MASK;
      if (doff && io_pwrite (io, bm->bits + k * cs, cs, doff,
                             "a bitmap data cluster") == -1)
        return -1;
    }
    free (tbl);
    tbl = calloc (1, tlen);
    if (!tbl) {
      qad_error ("%s: calloc: %m", io->name);
      return -1;
    }
    for (k = 0; k < bm->table_size; ++k)
      store_be64 (tbl + k * 8, bm->table[k]);
    if (io_pwrite (io, tbl, tlen, bm->table_offset, "a bitmap table") == -1)
      return -1;
  }

  if (qdb->nr_bitmaps) {
    uint64_t dlen = ROUND_UP (dir_size, cs);
    dir = calloc (1, dlen);
    if (!dir) {
      qad_error ("%s: calloc: %m", io->name);
      return -1;
    }
    pos = 0;
    for (i = 0; i < qdb->nr_bitmaps; ++i) {
      const struct qdb_bitmap *bm = &qdb->bitmaps[i];
      uint8_t *e = dir + pos;
      store_be64 (e + 0, bm->table_offset);
      store_be64 (e + 8, bm->disk_size);
      store_be32 (e + 16, bm->table_size);
      store_be32 (e + 20, bm->granularity);
      store_be16 (e + 24, bm->flags);
      store_be16 (e + 26, bm->name_size);
      store_be32 (e + 36, bm->extra_data_size);
      if (bm->extra_data_size)
        memcpy (e + QDB_DIR_ENTRY_FIXED, bm->extra_data,
                bm->extra_data_size);
      memcpy (e + QDB_DIR_ENTRY_FIXED + bm->extra_data_size, bm->name,
              bm->name_size);
      pos += ROUND_UP ((uint64_t) QDB_DIR_ENTRY_FIXED + bm->extra_data_size +
                       bm->name_size, 8);
    }
    if (io_pwrite (io, dir, dlen, qdb->dir_offset,
                   "the bitmap directory") == -1)
      return -1;
  }
  /* Everything else is durable before the header makes it a QDB file,
   * so a crash while creating a file leaves one that is refused (bad
   * magic), never one that parses with garbage behind it.
   */
  if (io_sync (io) == -1)
    return -1;
  if (io_pwrite (io, c0, cs, 0, "the header") == -1)
    return -1;
  if (io_sync (io) == -1)
    return -1;
  qdb->file_size = io->size;
  qdb->leaked_clusters = 0;
  return 0;
}

int
qdb_allocate_all (struct qdb_io *io, struct qdb_file *qdb,
                  struct qdb_bitmap *bm)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE uint64_t *newtab = NULL;
  uint64_t k, next, changed = 0;
  uint8_t e[8];

  if (!bm->bits) {
    qad_error ("%s: internal error: bitmap \"%s\" bits not loaded",
               io->name, bm->name);
    errno = EINVAL;
    return -1;
  }
  newtab = malloc ((bm->table_size ? bm->table_size : 1) * sizeof *newtab);
  if (!newtab) {
    qad_error ("%s: malloc: %m", io->name);
    return -1;
  }
  memcpy (newtab, bm->table, bm->table_size * sizeof *newtab);
  next = ROUND_UP (io->size, cs);
  for (k = 0; k < bm->table_size; ++k) {
    if (bm->table[k] != 0)
      continue;
    if (io_pwrite (io, bm->bits + k * cs, cs, next,
                   "a new bitmap data cluster") == -1)
      return -1;
    newtab[k] = next;
    next += cs;
    changed++;
  }
  if (changed == 0)
    return 0;
  /* The clusters must be durable before the table points at them. */
  if (io_sync (io) == -1)
    return -1;
  for (k = 0; k < bm->table_size; ++k) {
    if (newtab[k] == bm->table[k])
      continue;
    store_be64 (e, newtab[k]);
    if (io_pwrite (io, e, 8, bm->table_offset + k * 8,
                   "a bitmap table entry") == -1)
      return -1;
  }
  if (io_sync (io) == -1)
    return -1;
  memcpy (bm->table, newtab, bm->table_size * sizeof *newtab);
  qdb->file_size = io->size;
  return 0;
}

int
qdb_clear_unknown_autoclear (struct qdb_io *io, struct qdb_file *qdb)
{
  uint8_t v[8];

  if ((qdb->autoclear & ~QDB_AUTOCLEAR_KNOWN) == 0)
    return 0;
  qdb->autoclear &= QDB_AUTOCLEAR_KNOWN;
  store_be64 (v, qdb->autoclear);
  if (io_pwrite (io, v, 8, 48, "autoclear_features") == -1 ||
      io_sync (io) == -1)
    return -1;
  return 0;
}

uint64_t
qdb_dirty_granules (const struct qdb_bitmap *bm)
{
  uint64_t n = 0;
  size_t i, len = div_round_up (bm->nr_granules, 8);

  for (i = 0; i < len; ++i)
    n += __builtin_popcount (bm->bits[i]);
  return n;
}

uint64_t
qdb_dirty_bytes (const struct qdb_bitmap *bm)
{
  uint64_t n = qdb_dirty_granules (bm) * bm->granularity;

  /* The last granule may be short. */
  if (bm->nr_granules > 0 &&
      bit_test (bm->bits, bm->nr_granules - 1) &&
      bm->disk_size % bm->granularity)
    n -= bm->granularity - bm->disk_size % bm->granularity;
  return n;
}
