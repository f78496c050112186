/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* QDB persistent dirty bitmap files (docs/specs/qdb.txt).
 *
 * The whole file model lives in memory: header, extensions, the
 * directory, every bitmap table and (on request) every bitmap's bits.
 * Reads and writes go through a struct qdb_io so that the same code
 * parses a real file, a memory buffer (unit tests, fuzzing) and writes
 * a new file.
 *
 * Errors: every function that fails calls qad_error once, naming the
 * file, the field and the value, sets errno and returns -1 or NULL.
 *
 * The library is split by concern: qdb-io.c (backends), qdb-model.c
 * (the model), qdb-header.c and qdb-directory.c (their bytes, laid out
 * in qdb-layout.h), qdb-region-map.c, qdb-read.c (validation) and
 * qdb-write.c.
 */

#ifndef QAD_QDB_H
#define QAD_QDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vector.h"

#define QDB_MAGIC "QDB\0"
#define QDB_VERSION 1
#define QDB_MIN_CLUSTER_BITS 9
#define QDB_MAX_CLUSTER_BITS 21
#define QDB_DEFAULT_CLUSTER_BITS 16
#define QDB_MAX_BITMAPS 65535
#define QDB_MAX_DIRECTORY_SIZE (64 * 1024 * 1024)
#define QDB_MIN_GRANULARITY 512
#define QDB_MAX_GRANULARITY (UINT64_C (1) << 31)
#define QDB_DEFAULT_GRANULARITY 65536
#define QDB_MAX_NAME_SIZE 1023
#define QDB_MAX_EXTRA_DATA_SIZE 65536
#define QDB_MAX_DISK_SIZE INT64_MAX

/* Header extension types. */
#define QDB_EXT_END 0
#define QDB_EXT_FEATURE_NAMES 0x6803f857
#define QDB_EXT_REGION_MAP 0x52474e4d  /* "RGNM" */

/* Incompatible feature bit 0: the file has a region map (header
 * extension QDB_EXT_REGION_MAP) and every marked region must be taken
 * as dirty in every enabled bitmap (docs/specs/qdb.txt, "Region map").
 */
#define QDB_INCOMPAT_REGION_MAP UINT64_C (1)
#define QDB_MIN_REGION_SIZE (UINT64_C (1) << 20)
#define QDB_MAX_REGION_SIZE (UINT64_C (1) << 40)
#define QDB_MAX_REGION_MAP_SIZE (16 * 1024 * 1024)

/* Feature bits known to this implementation. */
#define QDB_INCOMPAT_KNOWN QDB_INCOMPAT_REGION_MAP
#define QDB_COMPAT_KNOWN UINT64_C (0)
#define QDB_AUTOCLEAR_KNOWN UINT64_C (0)

/* Directory entry flags. */
#define QDB_FLAG_ENABLED 0x1
#define QDB_FLAG_IN_USE 0x2
#define QDB_FLAGS_KNOWN (QDB_FLAG_ENABLED | QDB_FLAG_IN_USE)

/* Bitmap table entries. */
#define QDB_ENTRY_ALL_ONES UINT64_C (1)
#define QDB_ENTRY_OFFSET_MASK UINT64_C (0x00fffffffffffe00)
#define QDB_ENTRY_RESERVED_MASK UINT64_C (0xff000000000001fe)

/* Where the bytes come from / go to. */
struct qdb_io {
  void *opaque;
  const char *name;             /* file name, for error messages */
  uint64_t size;                /* current size (updated by writes) */
  int (*pread) (void *opaque, void *buf, size_t count, uint64_t offset);
  int (*pwrite) (void *opaque, const void *buf, size_t count,
                 uint64_t offset);
  int (*sync) (void *opaque);
};

/* A file descriptor.  Size is taken with fstat.  Returns -1 on error. */
extern int qdb_io_init_fd (struct qdb_io *io, int *fd, const char *name);

/* A growable memory buffer (for tests and fuzzing). */
struct qdb_membuf {
  uint8_t *data;
  size_t size, alloc;
};
extern void qdb_io_init_mem (struct qdb_io *io, struct qdb_membuf *mb,
                             const char *name);

/* An opaque-preserving record (unknown extension or extra data). */
struct qdb_record {
  uint32_t type;
  uint32_t length;
  uint8_t *data;
};
DEFINE_VECTOR_TYPE (qdb_record_vector, struct qdb_record);

struct qdb_feature_name {
  uint8_t type;                 /* 0 incompat, 1 compat, 2 autoclear */
  uint8_t bit;
  char name[47];                /* NUL-terminated */
};

struct qdb_bitmap {
  char *name;                   /* NUL-terminated copy */
  size_t name_size;
  uint16_t flags;
  uint64_t granularity;
  uint64_t disk_size;
  uint64_t nr_granules;
  uint32_t table_size;          /* entries */
  uint64_t table_offset;        /* 0 until written */
  uint64_t *table;              /* table_size entries, host order */
  uint32_t extra_data_size;
  uint8_t *extra_data;          /* raw records, preserved */
  /* The bits, when loaded: table_size * cluster_size bytes, so that
   * every data cluster has a whole cluster of memory behind it.
   */
  uint8_t *bits;
  size_t bits_len;
};

struct qdb_file {
  const char *name;             /* for messages (not owned) */
  unsigned cluster_bits;
  uint32_t cluster_size;
  uint32_t header_length;
  uint8_t *header_tail;         /* bytes 64..header_length, preserved */
  uint64_t incompat, compat, autoclear;
  uint64_t dir_offset;
  uint32_t dir_size;
  qdb_record_vector exts;       /* unknown header extensions */
  struct qdb_feature_name *feature_names;
  size_t nr_feature_names;
  /* The directory, in order.  Grown with vector_grow (vector.h);
   * bitmaps_cap is its capacity.  Not a vector type only because many
   * readers use these two names.
   */
  struct qdb_bitmap *bitmaps;
  size_t nr_bitmaps;
  size_t bitmaps_cap;
  uint64_t file_size;           /* when parsed */
  uint64_t leaked_clusters;     /* computed by qdb_read */
  /* Region map (QDB_INCOMPAT_REGION_MAP): region_size 0 means none.
   * qdb_read ORs the marked regions into every enabled bitmap when it
   * loads bits (counting the granules that adds in region_recovered);
   * qdb_write writes the extension with an all-clear map, since every
   * bit is then in the bitmaps it writes.
   */
  uint64_t region_size;
  uint64_t region_map_offset;
  uint64_t region_map_size;     /* bytes */
  uint64_t region_recovered;    /* granules added by the region map */
};

/* Bytes of region map for a disk of DISK_SIZE bytes (0 on overflow). */
extern uint64_t qdb_region_map_size (uint64_t disk_size,
                                     uint64_t region_size);

/* Read and validate a whole file.  With LOAD_BITS, every bitmap's bits
 * are read too.  Returns NULL (after qad_error) on any problem.
 */
extern struct qdb_file *qdb_read (struct qdb_io *io, bool load_bits);

/* A new, empty model (no bitmaps). */
extern struct qdb_file *qdb_new (const char *name, unsigned cluster_bits);

extern void qdb_free (struct qdb_file *qdb);

/* Add a bitmap (all clean, bits allocated).  DISK_SIZE must be the
 * disk size of the file's other bitmaps, if any (one disk per file).
 * Returns its index or -1.
 */
extern int qdb_add_bitmap (struct qdb_file *qdb, const char *name,
                           uint64_t granularity, uint64_t disk_size,
                           uint16_t flags);
extern int qdb_remove_bitmap (struct qdb_file *qdb, size_t i);
extern struct qdb_bitmap *qdb_find_bitmap (struct qdb_file *qdb,
                                           const char *name);
/* Set in DST every granule that overlaps a dirty granule of SRC (the
 * granularities may differ).  Both must have their bits loaded and
 * cover the same disk size.  Returns 0, or -1 after qad_error.
 */
extern int qdb_merge_bitmap (struct qdb_file *qdb,
                             const struct qdb_bitmap *src,
                             struct qdb_bitmap *dst);
/* Every bit clean, and the in_use flag cleared. */
extern void qdb_clear_bitmap (struct qdb_bitmap *bm);
/* Every granule dirty, and the in_use flag cleared. */
extern void qdb_set_all_dirty (struct qdb_bitmap *bm);
/* Load bits of one bitmap (qdb_read with LOAD_BITS does all). */
extern int qdb_load_bits (struct qdb_io *io, struct qdb_file *qdb,
                          struct qdb_bitmap *bm);

/* Is NAME acceptable for a new bitmap (printable ASCII, no space, '/'
 * or ':', 1..1023 bytes)?  Reports the problem when not.
 */
extern bool qdb_name_ok (const char *file, const char *name);

/* Write the whole model to IO (an empty file) and sync.  All bitmaps
 * must have their bits loaded.  ALLOCATE_ALL: give every table entry a
 * data cluster (what a tracker needs); otherwise all-zero clusters get
 * entry 0 and all-ones clusters entry 1.  Table offsets in the model
 * are updated, and unknown autoclear bits cleared (every writer must).
 */
extern int qdb_write (struct qdb_io *io, struct qdb_file *qdb,
                      bool allocate_all);

/* In place, for a tracker: give every 0 table entry of bitmap BM a data
 * cluster appended at the end of the file (write, sync, then the table
 * entry, sync).  Bits must be loaded.
 */
extern int qdb_allocate_all (struct qdb_io *io, struct qdb_file *qdb,
                             struct qdb_bitmap *bm);

/* In place: clear unknown autoclear bits in the header (then sync).
 * (qdb_write clears them in the file it writes, and in the model.)
 */
extern int qdb_clear_unknown_autoclear (struct qdb_io *io,
                                        struct qdb_file *qdb);

/* File offset of byte BYTE of BM's bits, or 0 when that cluster has no
 * data cluster (entry 0 or ALL_ONES).
 */
static inline uint64_t
qdb_bits_file_offset (const struct qdb_file *qdb,
                      const struct qdb_bitmap *bm, uint64_t byte)
{
  uint64_t e = bm->table[byte >> qdb->cluster_bits];
  uint64_t off = e & QDB_ENTRY_OFFSET_MASK;
  return off ? off + (byte & (qdb->cluster_size - 1)) : 0;
}

/* Describe unknown incompatible features for messages ("bit 3 (foo)"). */
extern void qdb_describe_features (const struct qdb_file *qdb, int type,
                                   uint64_t bits, char *buf, size_t len);

/* Number of dirty granules and dirty bytes of a loaded bitmap. */
extern uint64_t qdb_dirty_granules (const struct qdb_bitmap *bm);
extern uint64_t qdb_dirty_bytes (const struct qdb_bitmap *bm);

#endif /* QAD_QDB_H */
