/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Limits on what a file can make us allocate.
 *
 * Every allocation whose size a file dictates is either bounded by a
 * fixed format limit (named next to the format: QED_MAX_BACKING_NAME,
 * ADDCOW_MAX_HEADER_SIZE, QDB_MAX_DIRECTORY_SIZE, ...) or by one of
 * the limits below, which a legitimate image may need to raise: each
 * has a parameter in the plugin, the filters and qad-img.  A file past
 * a limit is refused, naming the field, the value and the limit,
 * before anything is allocated for it.
 *
 * The limits are process-wide: set while parsing the configuration,
 * before any file is opened, and only read afterwards.
 */

#ifndef QAD_LIMITS_H
#define QAD_LIMITS_H

#include <stdint.h>

#define QAD_DEFAULT_MAX_TABLE_BYTES (UINT64_C (32) << 20)
#define QAD_DEFAULT_MAX_BITMAP_BYTES (UINT64_C (256) << 20)
#define QAD_DEFAULT_MAX_QDB_BYTES (UINT64_C (1) << 30)

struct qad_limits {
  /* QED: one L1 or L2 table (table_size * cluster_size).  QEMU's
   * default is 256 KiB; 32 MiB covers 8 MiB clusters at table_size 4.
   */
  uint64_t max_table_bytes;
  /* add-cow: the COW bitmap held in memory (one bit per cluster of the
   * image); also the cluster map of the QED consistency check.  256
   * MiB covers 128 TiB at 64 KiB clusters.
   */
  uint64_t max_bitmap_bytes;
  /* QDB: every bitmap table and all the bits of one file together
   * (bits are held for whole table clusters).
   */
  uint64_t max_qdb_bytes;
};

extern struct qad_limits qad_limits;

/* Set *LIMIT from the parameter KEY=VALUE, already parsed as a size
 * into PARSED (-1: the parser has reported the error).  A limit is at
 * least 4 KiB.  Returns 0, or -1 after qad_error.
 */
extern int qad_set_limit (const char *key, const char *value,
                          int64_t parsed, uint64_t *limit);

#endif /* QAD_LIMITS_H */
