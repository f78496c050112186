/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* I/O of a long range in bounded pieces: a read through a callback
 * that takes at most so many bytes at once (the plugin below a filter,
 * the clusters of an add-cow image), and zeroes written from one
 * bounded buffer where the file cannot punch or zero a range.
 *
 * Design notes: the callbacks return -1 with errno set and report
 * nothing; the read reports the failed piece once, naming the device
 * and the offset, while the zero writer leaves reporting a failed
 * piece to its callback (each names its file its own way, or hands
 * nbdkit an errno).  Pieces
 * of a read never cross a multiple of the bound, so that a bound of
 * one cluster gives one piece per cluster.
 */

#ifndef QAD_PIECES_H
#define QAD_PIECES_H

#include <stdint.h>

typedef int (*qad_read_fn) (void *opaque, void *buf, uint64_t count,
                            uint64_t offset);
typedef int (*qad_write_fn) (void *opaque, const void *buf,
                             uint64_t count, uint64_t offset);

/* Read COUNT bytes at OFFSET into BUF with READ_PIECE, in pieces of
 * at most MAX bytes (a power of 2) that do not cross a multiple of
 * MAX.  On failure reports "NAME: read failed: offset=O count=N: ERROR"
 * for the piece that failed and returns -1 with READ_PIECE's errno.
 */
extern int qad_read_pieces (const char *name, void *buf, uint64_t count,
                            uint64_t offset, uint64_t max,
                            qad_read_fn read_piece, void *opaque);

/* The largest piece qad_write_zeroes writes. */
#define QAD_ZEROES_PIECE (UINT64_C (1) << 20)

/* Write COUNT zero bytes at OFFSET of NAME with WRITE_PIECE, in pieces
 * of at most QAD_ZEROES_PIECE bytes.  Returns 0, or -1 with errno set:
 * WRITE_PIECE's (which reports its own failure), or ENOMEM when the
 * buffer cannot be allocated (reported, naming NAME).
 */
extern int qad_write_zeroes (const char *name, uint64_t count,
                             uint64_t offset, qad_write_fn write_piece,
                             void *opaque);

#endif /* QAD_PIECES_H */
