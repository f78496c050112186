/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Where every field of a QDB file lies (docs/specs/qdb.txt), each
 * offset and size named once.  Private to common/qdb: the rest of the
 * project sees the model (qdb.h), never the bytes.
 */

#ifndef QAD_QDB_LAYOUT_H
#define QAD_QDB_LAYOUT_H

/* Header, fixed part (cluster 0, "Header"). */
enum {
  QDB_HDR_MAGIC = 0,            /* 4 bytes */
  QDB_HDR_VERSION = 4,          /* be32 */
  QDB_HDR_CLUSTER_BITS = 8,     /* be32 */
  QDB_HDR_NB_BITMAPS = 12,      /* be32 */
  QDB_HDR_DIR_OFFSET = 16,      /* be64 */
  QDB_HDR_HEADER_LENGTH = 24,   /* be32 */
  QDB_HDR_DIR_SIZE = 28,        /* be32 */
  QDB_HDR_INCOMPAT = 32,        /* be64 */
  QDB_HDR_COMPAT = 40,          /* be64 */
  QDB_HDR_AUTOCLEAR = 48,       /* be64 */
  QDB_HDR_RESERVED = 56,        /* 8 bytes */
  QDB_HEADER_LENGTH = 64,       /* the fixed part version 1 writes */
};

/* A typed record: a header extension, or a record of a directory
 * entry's extra data.  The data is zero-padded to QDB_RECORD_ALIGN.
 */
enum {
  QDB_REC_TYPE = 0,             /* be32 */
  QDB_REC_LENGTH = 4,           /* be32: bytes of data, padding excluded */
  QDB_REC_DATA = 8,             /* the record header's size */
  QDB_RECORD_ALIGN = 8,
};

/* Feature name table entry (header extension QDB_EXT_FEATURE_NAMES). */
enum {
  QDB_FNAME_TYPE = 0,           /* 1 byte: 0 incompat, 1 compat, 2 autoclear */
  QDB_FNAME_BIT = 1,            /* 1 byte */
  QDB_FNAME_NAME = 2,           /* ASCII, zero-padded to the entry's end */
  QDB_FEATURE_NAME_ENTRY = 48,
  QDB_FNAME_NAME_LEN = QDB_FEATURE_NAME_ENTRY - QDB_FNAME_NAME,
};
#define QDB_FEATURE_TYPES 3
#define QDB_FEATURE_BITS 64

/* Region map header extension (QDB_EXT_REGION_MAP) data. */
enum {
  QDB_RGNM_REGION_SIZE = 0,     /* be64 */
  QDB_RGNM_MAP_OFFSET = 8,      /* be64 */
  QDB_RGNM_MAP_SIZE = 16,       /* be64 */
  QDB_REGION_MAP_EXT_LEN = 24,
};

/* Bitmap directory entry: the fixed part, then extra data, the name
 * and zero padding to QDB_DIR_ENTRY_ALIGN.
 */
enum {
  QDB_DIRENT_TABLE_OFFSET = 0,  /* be64 */
  QDB_DIRENT_DISK_SIZE = 8,     /* be64 */
  QDB_DIRENT_TABLE_SIZE = 16,   /* be32 */
  QDB_DIRENT_GRANULARITY = 20,  /* be32 */
  QDB_DIRENT_FLAGS = 24,        /* be16 */
  QDB_DIRENT_NAME_SIZE = 26,    /* be16 */
  QDB_DIRENT_RESERVED = 28,     /* 8 bytes */
  QDB_DIRENT_EXTRA_DATA_SIZE = 36, /* be32 */
  QDB_DIR_ENTRY_FIXED = 40,     /* extra data starts here */
  QDB_DIR_ENTRY_ALIGN = 8,
};

/* Bitmap table entries are be64 (layout of the bits: qdb.h). */
#define QDB_TABLE_ENTRY_SIZE 8

#endif /* QAD_QDB_LAYOUT_H */
