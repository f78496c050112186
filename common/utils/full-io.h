/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* pread/pwrite that loop over short transfers and EINTR.
 * full_pread reports a read past end-of-file as an error (EIO);
 * use pread_or_zero when reading past EOF means zeroes.
 */

#ifndef QAD_FULL_IO_H
#define QAD_FULL_IO_H

#include <stdint.h>
#include <sys/types.h>

extern int full_pread (int fd, void *buf, size_t count, uint64_t offset);
extern int full_pwrite (int fd, const void *buf, size_t count,
                        uint64_t offset);

/* Read, filling whatever lies past end-of-file with zeroes. */
extern int pread_or_zero (int fd, void *buf, size_t count, uint64_t offset);

/* The same on a descriptor given as a pointer to int, for the format
 * library's replaceable I/O callbacks (struct qdb_io, struct
 * addcow_store_io).  fd_io_sync is fdatasync.
 */
extern int fd_io_pread (void *fdp, void *buf, size_t count, uint64_t offset);
extern int fd_io_pwrite (void *fdp, const void *buf, size_t count,
                         uint64_t offset);
extern int fd_io_sync (void *fdp);

#endif /* QAD_FULL_IO_H */
