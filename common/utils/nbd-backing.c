/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* An NBD export as a qad_blockdev, for the add-cow and qed filters'
 * backing files.  One libnbd handle shared by every thread: libnbd
 * serialises calls on a handle internally, which is enough for a
 * backing file that is only read (and, with copy-on-read, read once).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "blockdev.h"
#include "minmax.h"
#include "nbd-backing.h"
#include "qad-error.h"

#define MAX_REQUEST (32 * 1024 * 1024)

struct nbd_dev {
  struct qad_blockdev dev;
  struct nbd_handle *nbd;
  bool have_meta;
};

static int
nbd_dev_pread (struct qad_blockdev *dev, void *buf, uint64_t count,
               uint64_t offset)
{
  struct nbd_dev *d = (struct nbd_dev *) dev;
  uint64_t n = 0, done = 0;

  if (offset < dev->size)
    n = MIN (count, dev->size - offset);
  while (done < n) {
    size_t len = MIN (n - done, (uint64_t) MAX_REQUEST);
    if (nbd_pread (d->nbd, (char *) buf + done, len, offset + done, 0) == -1) {
      qad_error ("%s: NBD read failed: offset=%" PRIu64 " count=%zu: %s",
                 dev->name, offset + done, len, nbd_get_error ());
      errno = nbd_get_errno () ? nbd_get_errno () : EIO;
      return -1;
    }
    done += len;
  }
  memset ((char *) buf + n, 0, count - n);
  return 0;
}

struct extent_result {
  uint64_t offset;
  uint64_t len;
  uint32_t flags;
  bool found;
};

static int
extent_cb (void *opaque, const char *metacontext, uint64_t offset,
           uint32_t *entries, size_t nr_entries, int *error)
{
  struct extent_result *r = opaque;

  if (strcmp (metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0 ||
      nr_entries < 2 || r->found)
    return 0;
  /* The first entry describes the extent starting at offset. */
  if (offset == r->offset) {
    r->len = entries[0];
    r->flags = entries[1] & (QAD_EXTENT_HOLE | QAD_EXTENT_ZERO);
    r->found = true;
  }
  return 0;
}

static int
nbd_dev_extent (struct qad_blockdev *dev, uint64_t offset, uint64_t max,
                uint64_t *len, uint32_t *flags)
{
  struct nbd_dev *d = (struct nbd_dev *) dev;
  struct extent_result r = { .offset = offset };
  uint64_t count;

  if (offset >= dev->size) {
    *len = max;
    *flags = QAD_EXTENT_HOLE | QAD_EXTENT_ZERO;
    return 0;
  }
  count = MIN (max, dev->size - offset);
  count = MIN (count, (uint64_t) UINT32_MAX & ~UINT64_C (0xfff));
  if (count == 0)
    count = MIN (max, dev->size - offset);
  if (d->have_meta &&
      nbd_block_status (d->nbd, count, offset,
                        (nbd_extent_callback) { .callback = extent_cb,
                                                .user_data = &r },
                        0) == -1) {
    qad_error ("%s: NBD block status failed: offset=%" PRIu64 ": %s",
               dev->name, offset, nbd_get_error ());
    errno = nbd_get_errno () ? nbd_get_errno () : EIO;
    return -1;
  }
  if (!r.found || r.len == 0) {
    *len = count;
    *flags = 0;
  }
  else {
    *len = MIN (r.len, count);
    *flags = r.flags;
  }
  return 0;
}

static void
nbd_dev_close (struct qad_blockdev *dev)
{
  struct nbd_dev *d = (struct nbd_dev *) dev;

  nbd_shutdown (d->nbd, 0);
  nbd_close (d->nbd);
  free (dev->name);
  free (d);
}

static const struct qad_blockdev_ops nbd_ops = {
  .pread = nbd_dev_pread,
  .extent = nbd_dev_extent,
  .close = nbd_dev_close,
};

/* Connect to URI, or else run ARGV as an NBD server on a pipe. */
static struct qad_blockdev *
open_dev (const char *name, const char *uri, char **argv)
{
  struct nbd_dev *d;
  int64_t size;

  d = calloc (1, sizeof *d);
  if (d == NULL || (d->dev.name = strdup (name)) == NULL) {
    qad_error ("%s: %m", name);
    free (d);
    return NULL;
  }
  d->dev.ops = &nbd_ops;
  d->nbd = nbd_create ();
  if (d->nbd == NULL ||
      nbd_add_meta_context (d->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
      (uri ? nbd_connect_uri (d->nbd, uri)
       : nbd_connect_command (d->nbd, argv)) == -1) {
    qad_error ("%s: cannot connect to NBD backing: %s", name,
               nbd_get_error ());
    goto err;
  }
  size = nbd_get_size (d->nbd);
  if (size == -1) {
    qad_error ("%s: cannot get the NBD backing's size: %s", name,
               nbd_get_error ());
    goto err;
  }
  d->dev.size = size;
  d->have_meta =
    nbd_can_meta_context (d->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  return &d->dev;

 err:
  if (d->nbd)
    nbd_close (d->nbd);
  free (d->dev.name);
  free (d);
  return NULL;
}

struct qad_blockdev *
nbd_backing_open (const char *uri)
{
  return open_dev (uri, uri, NULL);
}

struct qad_blockdev *
nbd_backing_open_url (const char *url)
{
  char *argv[] = { (char *) "nbdkit", (char *) "-r", (char *) "-s",
                   (char *) "--exit-with-parent", (char *) "curl",
                   (char *) url, NULL };

  return open_dev (url, NULL, argv);
}
