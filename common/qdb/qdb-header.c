/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Cluster 0: the fixed header and the header extensions, parsed into
 * the model and serialized from it.
 *
 * Notes on the design.  cluster_bits is range-checked before anything
 * uses 1 << cluster_bits, and every extension is checked to lie inside
 * cluster 0 (with checked arithmetic) before its data is touched.
 * Known extensions are taken apart; unknown ones, like the bytes
 * between QDB_HEADER_LENGTH and header_length, are kept verbatim for
 * the writer.  Padding is ignored on reading and written as zero.
 * Unknown incompatible features are refused only after the feature
 * name table is parsed, so that the message can name them.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb-layout.h"
#include "qdb.h"
#include "rounding.h"

int
qdb_record_parse (const uint8_t *p, uint64_t off, uint64_t limit,
                  uint32_t *type, uint32_t *len, uint64_t *next)
{
  if (!range_within (off, QDB_REC_DATA, limit))
    return -1;
  *type = load_be32 (p + off + QDB_REC_TYPE);
  *len = load_be32 (p + off + QDB_REC_LENGTH);
  if (ADD_OVERFLOW (off + QDB_REC_DATA,
                    ROUND_UP ((uint64_t) *len, QDB_RECORD_ALIGN), next) ||
      *next > limit)
    return -2;
  return 0;
}

size_t
qdb_record_put (uint8_t *p, uint32_t type, uint32_t len, const uint8_t *data)
{
  store_be32 (p + QDB_REC_TYPE, type);
  store_be32 (p + QDB_REC_LENGTH, len);
  if (len)
    memcpy (p + QDB_REC_DATA, data, len);
  return QDB_REC_DATA + ROUND_UP ((size_t) len, QDB_RECORD_ALIGN);
}

static int
parse_region_map_ext (struct qdb_file *qdb, const uint8_t *d, uint32_t len)
{
  if (qdb->region_size || len != QDB_REGION_MAP_EXT_LEN) {
    qad_error ("%s: header extension 0x%08x (region map): %s "
               "(length %" PRIu32 ", must be %d)", qdb->name,
               QDB_EXT_REGION_MAP,
               qdb->region_size ? "appears twice" : "wrong length", len,
               QDB_REGION_MAP_EXT_LEN);
    return -1;
  }
  qdb->region_size = load_be64 (d + QDB_RGNM_REGION_SIZE);
  qdb->region_map_offset = load_be64 (d + QDB_RGNM_MAP_OFFSET);
  qdb->region_map_size = load_be64 (d + QDB_RGNM_MAP_SIZE);
  if (qdb->region_size == 0) {
    qad_error ("%s: region map: region_size 0 is invalid", qdb->name);
    return -1;
  }
  return 0;
}

/* Entries naming a type or bit this version does not define are kept
 * (a later revision may define them) and never match a feature bit.
 */
static int
parse_feature_names (struct qdb_file *qdb, const uint8_t *d, uint32_t len,
                     bool *seen)
{
  size_t i, n;

  if (*seen) {
    qad_error ("%s: header extension 0x%08x (feature name table) appears "
               "twice", qdb->name, QDB_EXT_FEATURE_NAMES);
    return -1;
  }
  *seen = true;
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
    const uint8_t *e = d + i * QDB_FEATURE_NAME_ENTRY;
    struct qdb_feature_name *fn = &qdb->feature_names[i];

    fn->type = e[QDB_FNAME_TYPE];
    fn->bit = e[QDB_FNAME_BIT];
    memcpy (fn->name, e + QDB_FNAME_NAME, QDB_FNAME_NAME_LEN);
    fn->name[QDB_FNAME_NAME_LEN] = '\0';
  }
  qdb->nr_feature_names = n;
  return 0;
}

static int
keep_unknown_ext (struct qdb_file *qdb, uint32_t type, const uint8_t *d,
                  uint32_t len)
{
  struct qdb_record x = { .type = type, .length = len };

  x.data = malloc (len ? len : 1);
  if (!x.data) {
    qad_error ("%s: malloc: %m", qdb->name);
    return -1;
  }
  memcpy (x.data, d, len);
  if (qdb_record_vector_append (&qdb->exts, x) == -1) {
    qad_error ("%s: realloc: %m", qdb->name);
    free (x.data);
    return -1;
  }
  return 0;
}

static int
parse_extensions (struct qdb_file *qdb, const uint8_t *c0)
{
  const uint64_t cs = qdb->cluster_size;
  uint64_t off = qdb->header_length, next;
  bool seen_names = false;
  uint32_t type, len;
  int r;

  for (;; off = next) {
    const uint8_t *d = c0 + off + QDB_REC_DATA;

    r = qdb_record_parse (c0, off, cs, &type, &len, &next);
    if (r == -1) {
      qad_error ("%s: header extensions: no end marker inside cluster 0 "
                 "(next extension at offset %" PRIu64 ", cluster_size %"
                 PRIu64 ")", qdb->name, off, cs);
      return -1;
    }
    if (type == QDB_EXT_END) {
      if (len != 0) {
        qad_error ("%s: header extension end marker at offset %" PRIu64
                   " has length %" PRIu32 " (must be 0)",
                   qdb->name, off, len);
        return -1;
      }
      return 0;
    }
    if (r == -2) {
      qad_error ("%s: header extension 0x%08" PRIx32 " at offset %" PRIu64
                 ": length %" PRIu32 " runs past cluster 0 (cluster_size %"
                 PRIu64 ")", qdb->name, type, off, len, cs);
      return -1;
    }
    if (type == QDB_EXT_REGION_MAP)
      r = parse_region_map_ext (qdb, d, len);
    else if (type == QDB_EXT_FEATURE_NAMES)
      r = parse_feature_names (qdb, d, len, &seen_names);
    else
      r = keep_unknown_ext (qdb, type, d, len);
    if (r == -1)
      return -1;
  }
}

/* The fixed fields that need only the 64 bytes of the fixed header. */
static struct qdb_file *
parse_fixed (struct qdb_io *io, const uint8_t *h, uint32_t *nb_bitmaps)
{
  uint32_t version, cluster_bits;
  struct qdb_file *qdb;

  if (memcmp (h + QDB_HDR_MAGIC, QDB_MAGIC, 4) != 0) {
    qad_error ("%s: magic %02x %02x %02x %02x is not QDB (51 44 42 00)",
               io->name, h[0], h[1], h[2], h[3]);
    errno = EINVAL;
    return NULL;
  }
  version = load_be32 (h + QDB_HDR_VERSION);
  if (version != QDB_VERSION) {
    qad_error ("%s: version %" PRIu32 " is not supported (only %d)",
               io->name, version, QDB_VERSION);
    errno = ENOTSUP;
    return NULL;
  }
  cluster_bits = load_be32 (h + QDB_HDR_CLUSTER_BITS);
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
  qdb->file_size = io->size;
  *nb_bitmaps = load_be32 (h + QDB_HDR_NB_BITMAPS);
  qdb->dir_offset = load_be64 (h + QDB_HDR_DIR_OFFSET);
  qdb->header_length = load_be32 (h + QDB_HDR_HEADER_LENGTH);
  qdb->dir_size = load_be32 (h + QDB_HDR_DIR_SIZE);
  qdb->incompat = load_be64 (h + QDB_HDR_INCOMPAT);
  qdb->compat = load_be64 (h + QDB_HDR_COMPAT);
  qdb->autoclear = load_be64 (h + QDB_HDR_AUTOCLEAR);
  return qdb;
}

/* Cluster 0 of a model whose fixed fields are parsed. */
static int
parse_cluster0 (struct qdb_io *io, struct qdb_file *qdb)
{
  const uint64_t cs = qdb->cluster_size;
  CLEANUP_FREE uint8_t *c0 = NULL;

  if (io->size < cs) {
    qad_error ("%s: file size %" PRIu64 " is smaller than cluster 0 "
               "(cluster_size %" PRIu64 ")", io->name, io->size, cs);
    errno = EINVAL;
    return -1;
  }
  if (qdb->header_length < QDB_HEADER_LENGTH ||
      qdb->header_length % QDB_RECORD_ALIGN != 0 ||
      qdb->header_length > cs - QDB_REC_DATA) {
    qad_error ("%s: header_length %" PRIu32 " is invalid (a multiple of %d, "
               "at least %d, at most cluster_size - %d = %" PRIu64 ")",
               io->name, qdb->header_length, QDB_RECORD_ALIGN,
               QDB_HEADER_LENGTH, QDB_REC_DATA, cs - QDB_REC_DATA);
    errno = EINVAL;
    return -1;
  }
  c0 = malloc (cs);
  if (!c0) {
    qad_error ("%s: malloc: %m", io->name);
    return -1;
  }
  if (qdb_io_read (io, c0, cs, 0, "cluster 0") == -1)
    return -1;
  if (qdb->header_length > QDB_HEADER_LENGTH) {
    qdb->header_tail = malloc (qdb->header_length - QDB_HEADER_LENGTH);
    if (!qdb->header_tail) {
      qad_error ("%s: malloc: %m", io->name);
      return -1;
    }
    memcpy (qdb->header_tail, c0 + QDB_HEADER_LENGTH,
            qdb->header_length - QDB_HEADER_LENGTH);
  }
  if (parse_extensions (qdb, c0) == -1) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

struct qdb_file *
qdb_header_read (struct qdb_io *io, uint32_t *nb_bitmaps)
{
  uint8_t h[QDB_HEADER_LENGTH];
  struct qdb_file *qdb;

  if (io->size < QDB_HEADER_LENGTH) {
    qad_error ("%s: file size %" PRIu64 " is too small for a QDB header "
               "(%d bytes)", io->name, io->size, QDB_HEADER_LENGTH);
    errno = EINVAL;
    return NULL;
  }
  if (qdb_io_read (io, h, sizeof h, 0, "the header") == -1)
    return NULL;
  qdb = parse_fixed (io, h, nb_bitmaps);
  if (!qdb)
    return NULL;
  if (parse_cluster0 (io, qdb) == -1)
    goto err;

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
  return qdb;

 err:
  return qdb_discard (qdb);
}

uint64_t
qdb_header_bytes (const struct qdb_file *qdb)
{
  uint64_t need = qdb->header_length + QDB_REC_DATA;    /* end marker */
  size_t i;

  if (qdb->nr_feature_names)
    need += QDB_REC_DATA +
      (uint64_t) qdb->nr_feature_names * QDB_FEATURE_NAME_ENTRY;
  for (i = 0; i < qdb->exts.len; ++i)
    need += QDB_REC_DATA +
      ROUND_UP ((uint64_t) qdb->exts.ptr[i].length, QDB_RECORD_ALIGN);
  if (qdb->region_size)
    need += QDB_REC_DATA + QDB_REGION_MAP_EXT_LEN;
  return need;
}

static size_t
put_feature_names (const struct qdb_file *qdb, uint8_t *p)
{
  uint32_t len = qdb->nr_feature_names * QDB_FEATURE_NAME_ENTRY;
  size_t i;

  store_be32 (p + QDB_REC_TYPE, QDB_EXT_FEATURE_NAMES);
  store_be32 (p + QDB_REC_LENGTH, len);
  for (i = 0; i < qdb->nr_feature_names; ++i) {
    const struct qdb_feature_name *fn = &qdb->feature_names[i];
    uint8_t *e = p + QDB_REC_DATA + i * QDB_FEATURE_NAME_ENTRY;

    e[QDB_FNAME_TYPE] = fn->type;
    e[QDB_FNAME_BIT] = fn->bit;
    memcpy (e + QDB_FNAME_NAME, fn->name,
            strnlen (fn->name, QDB_FNAME_NAME_LEN));
  }
  return QDB_REC_DATA + len;
}

void
qdb_header_serialize (const struct qdb_file *qdb, uint8_t *c0)
{
  size_t off = qdb->header_length, i;

  memcpy (c0 + QDB_HDR_MAGIC, QDB_MAGIC, 4);
  store_be32 (c0 + QDB_HDR_VERSION, QDB_VERSION);
  store_be32 (c0 + QDB_HDR_CLUSTER_BITS, qdb->cluster_bits);
  store_be32 (c0 + QDB_HDR_NB_BITMAPS, qdb->nr_bitmaps);
  store_be64 (c0 + QDB_HDR_DIR_OFFSET, qdb->dir_offset);
  store_be32 (c0 + QDB_HDR_HEADER_LENGTH, qdb->header_length);
  store_be32 (c0 + QDB_HDR_DIR_SIZE, qdb->dir_size);
  store_be64 (c0 + QDB_HDR_INCOMPAT, qdb->incompat);
  store_be64 (c0 + QDB_HDR_COMPAT, qdb->compat);
  store_be64 (c0 + QDB_HDR_AUTOCLEAR, qdb->autoclear);
  if (qdb->header_tail)
    memcpy (c0 + QDB_HEADER_LENGTH, qdb->header_tail,
            qdb->header_length - QDB_HEADER_LENGTH);

  if (qdb->nr_feature_names)
    off += put_feature_names (qdb, c0 + off);
  for (i = 0; i < qdb->exts.len; ++i) {
    const struct qdb_record *x = &qdb->exts.ptr[i];
    off += qdb_record_put (c0 + off, x->type, x->length, x->data);
  }
  if (qdb->region_size) {
    uint8_t d[QDB_REGION_MAP_EXT_LEN];

    store_be64 (d + QDB_RGNM_REGION_SIZE, qdb->region_size);
    store_be64 (d + QDB_RGNM_MAP_OFFSET, qdb->region_map_offset);
    store_be64 (d + QDB_RGNM_MAP_SIZE, qdb->region_map_size);
    off += qdb_record_put (c0 + off, QDB_EXT_REGION_MAP, sizeof d, d);
  }
  /* The end marker (type 0, length 0): C0 is already zero there. */
}
