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

#endif /* QAD_FULL_IO_H */
