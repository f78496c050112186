/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A bounded cache of L2 tables, keyed by the table's file offset. */

#ifndef QAD_QED_L2CACHE_H
#define QAD_QED_L2CACHE_H

#include <stdint.h>

struct qed_l2cache;

/* A cache of at most MAX_BYTES (at least one table of TABLE_BYTES). */
extern struct qed_l2cache *qed_l2cache_new (uint64_t table_bytes,
                                            uint64_t max_bytes);
extern void qed_l2cache_free (struct qed_l2cache *c);

/* How the cache reads a table from the image file: COUNT bytes at
 * OFFSET into BUF; -1 with errno set (and the error reported) on
 * failure.
 */
typedef int (*qed_l2cache_read_fn) (void *opaque, void *buf, uint64_t count,
                                    uint64_t offset);

/* Copy COUNT host-endian entries starting at INDEX of the table at
 * TABLE_OFFSET into OUT, loading the table with READ (OPAQUE) on a
 * miss.  Concurrent misses on one table read it once.  The caller has
 * validated TABLE_OFFSET.  Errors name FILENAME.
 */
extern int qed_l2cache_get (struct qed_l2cache *c, qed_l2cache_read_fn read,
                            void *opaque, const char *filename,
                            uint64_t table_offset, uint64_t index,
                            uint64_t count, uint64_t *out);

/* Make sure the table at TABLE_OFFSET is cached (for prefetching). */
extern int qed_l2cache_load (struct qed_l2cache *c, qed_l2cache_read_fn read,
                             void *opaque, const char *filename,
                             uint64_t table_offset);

/* Update a cached entry after the caller wrote it to disk (no-op when
 * the table is not cached).
 */
extern void qed_l2cache_set (struct qed_l2cache *c, uint64_t table_offset,
                             uint64_t index, uint64_t value);

/* Insert a freshly created all-zero table without reading it. */
extern int qed_l2cache_insert_empty (struct qed_l2cache *c,
                                     uint64_t table_offset);

/* Drop every cached table (after repair rewrote tables on disk). */
extern void qed_l2cache_clear (struct qed_l2cache *c);

#endif /* QAD_QED_L2CACHE_H */
