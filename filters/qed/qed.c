/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit-qed-filter: serve the guest view of a QED image whose bytes
 * come from the plugin below (curl, ssh, nbd, file, memory...).
 * Read-only.  Thin glue over common/qed: this file knows NBD,
 * common/qed knows QED.
 *
 * Notes on the design:
 *
 * The plugin below is a block device (struct qad_blockdev) to
 * common/qed, which opens the image on it with qed_open_dev: the
 * header, L1 table, bounded L2 cache and backing chain are the
 * plugin's code.  The device (filters/common/next-dev.c) reads
 * through the nbdkit_next of the request being served, which every
 * callback here hands it first (next_dev_enter): common/qed calls back
 * into the device on the calling thread only.
 *
 * One open image per export name, shared by every connection to it
 * (so the L2 cache, and a table fetched once, serve all of them), and
 * closed with its last connection.  The first .prepare for an export
 * opens it; later ones check that the plugin still serves the same
 * number of bytes.
 *
 * Coalescing: qed_map returns runs of clusters that are contiguous in
 * the image file, and each run is one read from the plugin (one HTTP
 * request with curl).  Concurrent misses on one L2 table wait for the
 * first reader (qed-l2cache.c), so a table is fetched once.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "blockdev.h"
#include "cleanup.h"
#include "minmax.h"
#include "next-dev.h"
#include "nbd-backing.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "qed-image.h"
#include "string-vector.h"

/* ---- parameters (set in .config, read-only afterwards) ---- */
static uint64_t l2_cache_bytes;         /* qed-l2-cache-size=, 0 = default */
static string_vector backings;          /* qed-backing=, in chain order */

/* -D qed.reads=1: log each read sent to the plugin below (headers,
 * tables and data alike: shows what the L2 cache and the coalescing
 * save).
 */
NBDKIT_DLL_PUBLIC int qed_debug_reads;

/* ---- backing files ---- */

static bool
is_nbd_uri (const char *s)
{
  return strncmp (s, "nbd://", 6) == 0 || strncmp (s, "nbds://", 7) == 0 ||
    strncmp (s, "nbd+", 4) == 0 || strncmp (s, "nbds+", 5) == 0;
}

/* What the chain opener learns (the opener's opaque). */
struct chain_state {
  unsigned depth;               /* deepest backing opened */
};

static struct qad_blockdev *
open_backing (void *opaque, unsigned depth, const char *image,
              const char *name)
{
  struct chain_state *st = opaque;
  const char *where;

  if (depth > backings.len) {
    nbdkit_error ("%s: the image has a backing file \"%s\": give "
                  "qed-backing=FILE|NBD-URI|URL (parameter number %u) to "
                  "say where to read it", image, name, depth);
    errno = ENOENT;
    return NULL;
  }
  where = backings.ptr[depth - 1];
  st->depth = depth;
  nbdkit_debug ("qed: backing file %u \"%s\" of %s read from %s",
                depth, name, image, where);
  if (is_nbd_uri (where))
    return nbd_backing_open (where);
  if (strstr (where, "://"))
    return nbd_backing_open_url (where);
  return qad_raw_open (where);
}

/* ---- one open image per export ---- */

struct export {
  struct export *next;
  char *name;
  struct qed_image *img;
  uint64_t file_size;           /* bytes the plugin served at open */
  unsigned refs;
};

/* exports_lock protects the list and each export's refs. */
static pthread_mutex_t exports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct export *exports;

struct handle {
  const char *exportname;       /* interned */
  struct export *exp;           /* NULL until .prepare succeeds */
};

/* With exports_lock held: open the image for EXPORTNAME. */
static struct export *
export_open (const char *exportname)
{
  struct qed_open_options opts = {
    .readonly = true, .l2_cache_bytes = l2_cache_bytes,
  };
  struct chain_state st = { 0 };
  struct qad_blockdev *file;
  struct export *e;

  file = next_dev_open ("image served by the plugin", exportname);
  if (file == NULL)
    return NULL;
  e = calloc (1, sizeof *e);
  if (e == NULL || (e->name = strdup (exportname)) == NULL) {
    nbdkit_error ("calloc: %m");
    free (e);
    qad_blockdev_close (file);
    return NULL;
  }
  e->file_size = file->size;
  e->img = qed_open_dev (file, &opts, open_backing, &st);
  if (e->img == NULL)
    goto err;
  if (st.depth < backings.len) {
    nbdkit_error ("%s: qed-backing=%s was given, but the backing chain has "
                  "only %u file%s", e->img->dev.name, backings.ptr[st.depth],
                  st.depth, st.depth == 1 ? "" : "s");
    goto err;
  }
  nbdkit_debug ("qed: export \"%s\": virtual size %" PRIu64 ", cluster %"
                PRIu64 ", tables of %" PRIu64 " clusters, backing %s, "
                "%" PRIu64 " bytes from the plugin", exportname, e->img->dev.size,
                e->img->geom.cluster_size,
                e->img->geom.table_bytes / e->img->geom.cluster_size,
                e->img->backing_path ? e->img->backing_path : "none",
                e->file_size);
  e->next = exports;
  exports = e;
  return e;

 err:
  qed_close (e->img);
  free (e->name);
  free (e);
  return NULL;
}

/* ---- filter callbacks ---- */

static void
error_handler (const char *msg)
{
  nbdkit_error ("%s", msg);
}

static void
qed_filter_load (void)
{
  qad_set_error_handler (error_handler);
  if (qed_debug_reads)          /* nbdkit sets flags before .load */
    next_dev_debug_reads = "qed";
}

static void
qed_filter_unload (void)
{
  string_vector_free_all (&backings);
}

static int
qed_filter_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                   const char *key, const char *value)
{
  if (strcmp (key, "qed-backing") == 0) {
    char *v;

    /* Resolve local names now: nbdkit chdirs to / when it daemonizes. */
    if (is_nbd_uri (value) || strstr (value, "://"))
      v = strdup (value);
    else
      v = nbdkit_realpath (value);
    if (v == NULL) {
      if (errno == ENOMEM)
        nbdkit_error ("strdup: %m");
      return -1;
    }
    if (string_vector_append (&backings, v) == -1) {
      nbdkit_error ("realloc: %m");
      free (v);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "qed-max-table-size") == 0)
    return qad_set_limit (key, value, nbdkit_parse_size (value),
                          &qad_limits.max_table_bytes);
  if (strcmp (key, "qed-l2-cache-size") == 0) {
    int64_t r = nbdkit_parse_size (value);

    if (r == -1)
      return -1;
    if (r < 4096) {
      nbdkit_error ("qed-l2-cache-size=%s: must be at least 4K", value);
      return -1;
    }
    l2_cache_bytes = r;
    return 0;
  }
  return next (nxdata, key, value);
}

#define qed_filter_config_help \
  "qed-backing=FILE|NBD-URI|URL  Where to read the image's backing file\n" \
  "                              (repeat for each file in the chain).\n" \
  "qed-l2-cache-size=SIZE        L2 table cache size (default 32M).\n" \
  "qed-max-table-size=SIZE       Largest L1/L2 table accepted (default 32M)."

static void *
qed_filter_open (nbdkit_next_open *next, nbdkit_context *nxdata,
                 int readonly, const char *exportname, int is_tls)
{
  struct handle *h;

  /* The image is only read: open the plugin read-only. */
  if (next (nxdata, 1, exportname) == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  h->exportname = nbdkit_strdup_intern (exportname);
  if (h->exportname == NULL) {
    free (h);
    return NULL;
  }
  return h;
}

static int
qed_filter_prepare (nbdkit_next *next, void *handle, int readonly)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&exports_lock);
  struct handle *h = handle;
  struct export *e;

  /* The shared device may read extents through this connection. */
  if (next_dev_prepare (next) == -1)
    return -1;
  for (e = exports; e != NULL; e = e->next)
    if (strcmp (e->name, h->exportname) == 0)
      break;
  if (e == NULL) {
    e = export_open (h->exportname);
    if (e == NULL)
      return -1;
  }
  else if (next_dev_check_size (next, e->file_size,
                                 e->img->dev.name) == -1)
    return -1;
  e->refs++;
  h->exp = e;
  return 0;
}

static void
qed_filter_close (void *handle)
{
  struct handle *h = handle;
  struct export **p;

  if (h->exp) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&exports_lock);
    if (--h->exp->refs == 0) {
      for (p = &exports; *p != h->exp; p = &(*p)->next)
        ;
      *p = h->exp->next;
      qed_close (h->exp->img);
      free (h->exp->name);
      free (h->exp);
    }
  }
  free (h);
}

static inline struct qed_image *
image_of (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  next_dev_enter (next);
  return h->exp->img;
}

static int64_t
qed_filter_get_size (nbdkit_next *next, void *handle)
{
  return image_of (next, handle)->dev.size;
}

static int
qed_filter_can_write (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
qed_filter_can_flush (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
qed_filter_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NONE;
}

static int
qed_filter_can_trim (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
qed_filter_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NONE;
}

static int
qed_filter_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
qed_filter_can_extents (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
qed_filter_can_multi_conn (nbdkit_next *next, void *handle)
{
  /* Read-only, and the image is shared by every connection. */
  return 1;
}

static int
qed_filter_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
qed_filter_pread (nbdkit_next *next, void *handle, void *buf,
                  uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  if (qed_pread (image_of (next, handle), buf, count, offset) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* Writes never reach here (can_write is 0, so nbdkit answers EROFS);
 * these answer the same if an outer filter tries anyway.
 */
static int
qed_filter_pwrite (nbdkit_next *next, void *handle, const void *buf,
                   uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  nbdkit_error ("the qed filter is read-only");
  *err = EROFS;
  return -1;
}

static int
qed_filter_zero (nbdkit_next *next, void *handle, uint32_t count,
                 uint64_t offset, uint32_t flags, int *err)
{
  return qed_filter_pwrite (next, handle, NULL, count, offset, flags, err);
}

static int
qed_filter_trim (nbdkit_next *next, void *handle, uint32_t count,
                 uint64_t offset, uint32_t flags, int *err)
{
  return qed_filter_pwrite (next, handle, NULL, count, offset, flags, err);
}

static int
qed_filter_extents (nbdkit_next *next, void *handle, uint32_t count,
                    uint64_t offset, uint32_t flags,
                    struct nbdkit_extents *extents, int *err)
{
  struct qed_image *img = image_of (next, handle);
  uint64_t end = offset + count;

  while (offset < end) {
    uint64_t len;
    uint32_t type;

    if (qed_extent (img, offset, end - offset, &len, &type) == -1 ||
        nbdkit_add_extent (extents, offset, len, type) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
    offset += len;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
  }
  return 0;
}

/* NBD_CMD_CACHE: fetch the L2 tables that map the range, then pass
 * the request down for the data clusters when the plugin can cache.
 */
static int
qed_filter_cache (nbdkit_next *next, void *handle, uint32_t count,
                  uint64_t offset, uint32_t flags, int *err)
{
  struct qed_image *img = image_of (next, handle);
  uint64_t end = MIN (offset + count, img->dev.size);
  int r;

  if (qed_prefetch_l2 (img, count, offset) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  r = next->can_cache (next);
  if (r == -1) {
    *err = EIO;
    return -1;
  }
  if (r != NBDKIT_CACHE_NATIVE)
    return 0;
  while (offset < end) {
    struct qed_mapping m;

    if (qed_map (img, offset, end - offset, &m) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
    if (m.kind == QED_KIND_DATA &&
        next->cache (next, MIN (m.length, (uint64_t) MAX_NEXT_REQUEST),
                     m.host_offset, 0, err) == -1)
      return -1;
    offset += m.length;
  }
  return 0;
}

static struct nbdkit_filter filter = {
  .name              = "qed",
  .longname          = "nbdkit QED filter",
  .load              = qed_filter_load,
  .unload            = qed_filter_unload,
  .config            = qed_filter_config,
  .config_help       = qed_filter_config_help,
  .open              = qed_filter_open,
  .prepare           = qed_filter_prepare,
  .close             = qed_filter_close,
  .get_size          = qed_filter_get_size,
  .can_write         = qed_filter_can_write,
  .can_flush         = qed_filter_can_flush,
  .can_fua           = qed_filter_can_fua,
  .can_trim          = qed_filter_can_trim,
  .can_zero          = qed_filter_can_zero,
  .can_fast_zero     = qed_filter_can_fast_zero,
  .can_extents       = qed_filter_can_extents,
  .can_multi_conn    = qed_filter_can_multi_conn,
  .can_cache         = qed_filter_can_cache,
  .pread             = qed_filter_pread,
  .pwrite            = qed_filter_pwrite,
  .zero              = qed_filter_zero,
  .trim              = qed_filter_trim,
  .extents           = qed_filter_extents,
  .cache             = qed_filter_cache,
};

NBDKIT_REGISTER_FILTER (filter)
