/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The QED header: the one place that knows its layout (see
 * docs/specs/qed.txt).  All fields are little-endian on disk.
 */

#ifndef QAD_QED_HEADER_H
#define QAD_QED_HEADER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define QED_MAGIC "QED\0"
#define QED_HEADER_BYTES 64     /* the fixed part of the header */

/* Field offsets. */
#define QED_OFF_MAGIC               0
#define QED_OFF_CLUSTER_SIZE        4
#define QED_OFF_TABLE_SIZE          8
#define QED_OFF_HEADER_SIZE        12
#define QED_OFF_FEATURES           16
#define QED_OFF_COMPAT_FEATURES    24
#define QED_OFF_AUTOCLEAR_FEATURES 32
#define QED_OFF_L1_TABLE_OFFSET    40
#define QED_OFF_IMAGE_SIZE         48
#define QED_OFF_BACKING_NAME_OFFSET 56
#define QED_OFF_BACKING_NAME_SIZE  60

/* Feature bits. */
#define QED_F_BACKING_FILE           UINT64_C (0x1)
#define QED_F_NEED_CHECK             UINT64_C (0x2)
#define QED_F_BACKING_FORMAT_NO_PROBE UINT64_C (0x4)
#define QED_FEATURE_MASK \
  (QED_F_BACKING_FILE | QED_F_NEED_CHECK | QED_F_BACKING_FORMAT_NO_PROBE)
#define QED_COMPAT_FEATURE_MASK    UINT64_C (0)
#define QED_AUTOCLEAR_FEATURE_MASK UINT64_C (0)

/* Limits. */
#define QED_MIN_CLUSTER_SIZE (UINT32_C (1) << 12)
#define QED_MAX_CLUSTER_SIZE (UINT32_C (1) << 26)
#define QED_MIN_TABLE_SIZE 1
#define QED_MAX_TABLE_SIZE 16
#define QED_DEFAULT_CLUSTER_SIZE (UINT32_C (64) * 1024)
#define QED_DEFAULT_TABLE_SIZE 4
/* Our own cap on the backing name (QEMU uses PATH_MAX, 4096). */
#define QED_MAX_BACKING_NAME 4096

/* Special table entries. */
#define QED_ENTRY_UNALLOCATED 0
#define QED_ENTRY_ZERO        1   /* L2 only: the cluster reads as zeroes */

struct qed_header {
  uint32_t cluster_size;
  uint32_t table_size;          /* in clusters */
  uint32_t header_size;         /* in clusters */
  uint64_t features;
  uint64_t compat_features;
  uint64_t autoclear_features;
  uint64_t l1_table_offset;
  uint64_t image_size;
  uint32_t backing_name_offset;
  uint32_t backing_name_size;
};

/* Geometry derived from a validated header. */
struct qed_geometry {
  unsigned cluster_bits;
  unsigned table_bits;          /* log2 of entries per table */
  uint64_t cluster_size;
  uint64_t table_entries;       /* entries per L1/L2 table */
  uint64_t table_bytes;         /* bytes per L1/L2 table */
  uint64_t header_bytes;        /* header_size * cluster_size */
  uint64_t max_image_size;      /* UINT64_MAX when it does not fit */
};

/* Decode the 64-byte header in BUF.  Does not validate. */
extern void qed_header_decode (const void *buf, struct qed_header *h);

/* Encode H into the 64-byte BUF. */
extern void qed_header_encode (const struct qed_header *h, void *buf);

/* Validate H for a file of FILE_SIZE bytes named FILENAME (for
 * messages) and fill *G.  Every error names the field and its value.
 * Unknown compat bits are accepted, unknown autoclear bits are left
 * for the caller to clear on a read-write open.
 */
extern int qed_header_validate (const char *filename,
                                const struct qed_header *h,
                                uint64_t file_size,
                                struct qed_geometry *g);

/* The largest image_size the geometry allows, computed without
 * overflow: saturates at UINT64_MAX.
 */
extern uint64_t qed_max_image_size (uint32_t cluster_size,
                                    uint32_t table_size);

/* Describe a features word as text ("backing_file|need_check|0x40").
 * Returns BUF.
 */
extern char *qed_features_string (uint64_t features, char *buf, size_t n);

/* The feature bits that record a backing file of FORMAT: "raw" (no
 * probing), "qed" or NULL (probed when opened).  Any other FORMAT is
 * refused with an error naming FILENAME: -1 (errno EINVAL).
 */
extern int qed_backing_format_features (const char *filename,
                                        const char *format,
                                        uint64_t *features);

/* The backing format H records: "raw" (NO_PROBE) or NULL (probed). */
extern const char *qed_recorded_backing_format (const struct qed_header *h);

/* True when BUF (4 bytes or more) starts with the QED magic. */
extern bool qed_probe_magic (const void *buf, size_t len);

/* True when the file at PATH can be read and starts with the QED
 * magic.  For warnings only: callers that must not probe (add-cow
 * records formats) use it to refuse a likely mistake, never to choose.
 */
extern bool qed_file_has_magic (const char *path);

#endif /* QAD_QED_HEADER_H */
