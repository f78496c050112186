/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the files of the QDB library share and nobody else sees.  Each
 * function reports its own errors (qad_error, naming the file).
 */

#ifndef QAD_QDB_INTERNAL_H
#define QAD_QDB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qdb.h"

/* qdb-io.c: I/O through a struct qdb_io; WHAT names the structure in
 * the error message.  qdb_io_write keeps io->size up to date.
 */
extern int qdb_io_read (struct qdb_io *io, void *buf, size_t count,
                        uint64_t offset, const char *what);
extern int qdb_io_write (struct qdb_io *io, const void *buf, size_t count,
                         uint64_t offset, const char *what);
extern int qdb_io_flush (struct qdb_io *io);

/* qdb-model.c */
extern void qdb_free_bitmap (struct qdb_bitmap *bm);
/* qdb_free on a failure path: keeps errno, returns NULL. */
extern struct qdb_file *qdb_discard (struct qdb_file *qdb);
/* nr_granules and table_size of a bitmap; false when the table would
 * have 2^32 entries or more.
 */
extern bool qdb_bitmap_geometry (const struct qdb_file *qdb,
                                 uint64_t disk_size, uint64_t granularity,
                                 uint64_t *nr_granules, uint64_t *table_size);
/* (Re)allocate BM's bits, all clean. */
extern int qdb_alloc_bits (struct qdb_file *qdb, struct qdb_bitmap *bm);

/* qdb-header.c */
/* One typed record at offset OFF of P (LIMIT bytes): its type, length
 * and the offset after its padding.  Returns 0, -1 when the record
 * header does not fit, -2 when the data or padding does not.
 */
extern int qdb_record_parse (const uint8_t *p, uint64_t off, uint64_t limit,
                             uint32_t *type, uint32_t *len, uint64_t *next);
/* Store a record at P; returns its padded size. */
extern size_t qdb_record_put (uint8_t *p, uint32_t type, uint32_t len,
                              const uint8_t *data);
/* Read and check the header, cluster 0 and the extensions.  Returns a
 * new model (no bitmaps yet) and the header's nb_bitmaps.
 */
extern struct qdb_file *qdb_header_read (struct qdb_io *io,
                                         uint32_t *nb_bitmaps);
/* Bytes of cluster 0 the header and extensions of QDB take. */
extern uint64_t qdb_header_bytes (const struct qdb_file *qdb);
/* Serialize the header and extensions into C0 (cluster_size bytes,
 * zeroed), from the model's current fields.
 */
extern void qdb_header_serialize (const struct qdb_file *qdb, uint8_t *c0);

/* qdb-directory.c */
extern uint64_t qdb_dir_entry_size (uint32_t extra_data_size,
                                    uint64_t name_size);
/* Check where the header puts the directory, read it and parse its
 * NB_BITMAPS entries into qdb->bitmaps (tables not read yet).
 */
extern int qdb_directory_read (struct qdb_io *io, struct qdb_file *qdb,
                               uint32_t nb_bitmaps);
/* Serialize every entry into DIR (qdb->dir_size bytes, zeroed). */
extern void qdb_directory_serialize (const struct qdb_file *qdb,
                                     uint8_t *dir);

/* qdb-region-map.c */
extern int qdb_region_map_check (struct qdb_file *qdb, uint64_t file_size);
extern int qdb_region_map_apply (struct qdb_io *io, struct qdb_file *qdb);
/* Place an all-clear region map at *NEXT (advanced) and write it. */
extern int qdb_region_map_write (struct qdb_io *io, struct qdb_file *qdb,
                                 uint64_t *next);

#endif /* QAD_QDB_INTERNAL_H */
