/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The I/O backends of struct qdb_io (a file descriptor, a growable
 * memory buffer) and the wrappers the library reads and writes
 * through, which word the error message once for every caller.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checked-overflow.h"
#include "full-io.h"
#include "qad-error.h"
#include "qdb-internal.h"
#include "qdb.h"
#include "vector.h"

int
qdb_io_init_fd (struct qdb_io *io, int *fd, const char *name)
{
  struct stat st;

  if (fstat (*fd, &st) == -1) {
    qad_error ("%s: fstat: %m", name);
    return -1;
  }
  io->opaque = fd;
  io->name = name;
  io->size = st.st_size;
  io->pread = fd_io_pread;
  io->pwrite = fd_io_pwrite;
  io->sync = fd_io_sync;
  return 0;
}

static int
mem_pread (void *opaque, void *buf, size_t count, uint64_t offset)
{
  struct qdb_membuf *mb = opaque;

  if (!range_within (offset, count, mb->size)) {
    errno = EIO;
    return -1;
  }
  memcpy (buf, mb->data + offset, count);
  return 0;
}

static int
mem_pwrite (void *opaque, const void *buf, size_t count, uint64_t offset)
{
  struct qdb_membuf *mb = opaque;
  uint64_t end;

  if (ADD_OVERFLOW (offset, count, &end) || end > SIZE_MAX / 2) {
    errno = EFBIG;
    return -1;
  }
  if (end > mb->alloc) {
    size_t old = mb->alloc;
    uint8_t *p = vector_grow (mb->data, 0, &mb->alloc, end, 1);

    if (!p)
      return -1;
    memset (p + old, 0, mb->alloc - old);
    mb->data = p;
  }
  memcpy (mb->data + offset, buf, count);
  if (end > mb->size)
    mb->size = end;
  return 0;
}

static int
mem_sync (void *opaque)
{
  return 0;
}

void
qdb_io_init_mem (struct qdb_io *io, struct qdb_membuf *mb, const char *name)
{
  io->opaque = mb;
  io->name = name;
  io->size = mb->size;
  io->pread = mem_pread;
  io->pwrite = mem_pwrite;
  io->sync = mem_sync;
}

int
qdb_io_read (struct qdb_io *io, void *buf, size_t count, uint64_t offset,
             const char *what)
{
  if (io->pread (io->opaque, buf, count, offset) == -1) {
    qad_error ("%s: reading %s (%zu bytes at offset %" PRIu64 "): %m",
               io->name, what, count, offset);
    return -1;
  }
  return 0;
}

int
qdb_io_write (struct qdb_io *io, const void *buf, size_t count,
              uint64_t offset, const char *what)
{
  if (io->pwrite (io->opaque, buf, count, offset) == -1) {
    qad_error ("%s: writing %s (%zu bytes at offset %" PRIu64 "): %m",
               io->name, what, count, offset);
    return -1;
  }
  if (offset + count > io->size)
    io->size = offset + count;
  return 0;
}

int
qdb_io_flush (struct qdb_io *io)
{
  if (io->sync (io->opaque) == -1) {
    qad_error ("%s: fdatasync: %m", io->name);
    return -1;
  }
  return 0;
}
