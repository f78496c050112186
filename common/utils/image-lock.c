/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "image-lock.h"
#include "qad-error.h"

#define PERM_BASE 100
#define SHARED_BASE 200

enum { PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE,
       NR_PERMS };
static const char *const perm_names[NR_PERMS] = {
  "consistent read", "write", "write unchanged", "resize"
};

/* Is byte BYTE locked by another open file description? */
static int
byte_in_use (int fd, unsigned byte, bool *in_use)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };

  if (fcntl (fd, F_OFD_GETLK, &fl) == -1)
    return -1;
  *in_use = fl.l_type != F_UNLCK;
  return 0;
}

static int
lock_byte (int fd, unsigned byte)
{
  struct flock fl = {
    .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
  };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

int
qad_lock_image (int fd, const char *name, bool write)
{
  /* What we hold and what we refuse to share, as QEMU would for a
   * read-write export or for a read-only backing file.
   */
  unsigned perms = 1u << PERM_CONSISTENT_READ;
  unsigned unshared = 1u << PERM_WRITE;
  unsigned i;
  bool in_use;

  if (write) {
    perms |= 1u << PERM_WRITE | 1u << PERM_WRITE_UNCHANGED |
      1u << PERM_RESIZE;
    unshared |= 1u << PERM_RESIZE;
  }

  for (i = 0; i < NR_PERMS; ++i) {
    if ((perms & (1u << i)) &&
        byte_in_use (fd, SHARED_BASE + i, &in_use) == 0 && in_use) {
      qad_error ("%s: failed to get \"%s\" lock: another process "
                 "(qemu or nbdkit) is using the image", name, perm_names[i]);
      errno = EAGAIN;
      return -1;
    }
    if ((unshared & (1u << i)) &&
        byte_in_use (fd, PERM_BASE + i, &in_use) == 0 && in_use) {
      qad_error ("%s: failed to get shared \"%s\" lock: another process "
                 "(qemu or nbdkit) is using the image", name, perm_names[i]);
      errno = EAGAIN;
      return -1;
    }
  }

  for (i = 0; i < NR_PERMS; ++i) {
    if (((perms & (1u << i)) && lock_byte (fd, PERM_BASE + i) == -1) ||
        ((unshared & (1u << i)) && lock_byte (fd, SHARED_BASE + i) == -1)) {
      if (errno == EAGAIN || errno == EACCES)
        qad_error ("%s: failed to lock the image: another process "
                   "(qemu or nbdkit) is using it", name);
      else if (errno == EINVAL || errno == ENOTSUP)
        return 0;               /* filesystem without OFD locks */
      else
        qad_error ("%s: failed to lock the image: %m", name);
      return -1;
    }
  }
  return 0;
}

int
qad_lock_whole_file (int fd, const char *name, const char *what)
{
  struct flock fl = {
    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0,
  };

  if (fcntl (fd, F_OFD_SETLK, &fl) == 0)
    return 0;
  if (errno == EAGAIN || errno == EACCES) {
    qad_error ("%s: %s is in use by another process (it is locked)",
               name, what);
    errno = EAGAIN;
  }
  else
    qad_error ("%s: cannot lock: %m", name);
  return -1;
}
