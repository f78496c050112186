/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Helpers shared by the per-object readers of crash states. */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pc-object.h"
#include "qad-error.h"

static char last_error[1024];

static void
remember_error (const char *msg)
{
  snprintf (last_error, sizeof last_error, "%s", msg);
}

/* The last message the format library reported. */
const char *
pc_last_error (void)
{
  return last_error;
}

__attribute__ ((constructor))
static void
install (void)
{
  qad_set_error_handler (remember_error);
}

/* Write the state's file NAME into WORK (remove it there when the
 * state has no such file).
 */
int
pc_put_file (struct pc_log *lg, const char *work, const char *name,
             char *msg, size_t len)
{
  char path[4096];
  const uint8_t *data;
  size_t dlen, done = 0;
  int fd;

  snprintf (path, sizeof path, "%s/%s", work, name);
  if (!pc_state_file (lg, name, &data, &dlen)) {
    unlink (path);
    return 0;
  }
  fd = open (path, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644);
  if (fd == -1) {
    snprintf (msg, len, "%s: %s", path, strerror (errno));
    return -1;
  }
  while (done < dlen) {
    ssize_t r = write (fd, data + done, dlen - done);
    if (r <= 0) {
      snprintf (msg, len, "%s: %s", path, strerror (errno));
      close (fd);
      return -1;
    }
    done += r;
  }
  close (fd);
  return 0;
}

/* DST[0..LEN) := bytes [OFF, OFF+LEN) of SRC, zeroes past its end. */
void
pc_copy_out (const uint8_t *src, size_t srclen, uint8_t *dst,
             uint64_t off, uint64_t len)
{
  uint64_t n = 0;
  if (off < srclen)
    n = srclen - off < len ? srclen - off : len;
  if (n)
    memcpy (dst, src + off, n);
  memset (dst + n, 0, len - n);
}
