/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * The plugin below this filter is the raw image; the add-cow sidecar
 * (header + COW bitmap, docs/specs/add-cow.txt) and the backing file
 * belong to the filter.  As in nbdkit's cow filter, this file is NBD
 * semantics only (parameters, lifecycle, can_*, splitting requests by
 * bit); the rest lives in:
 *   sidecar.c   open/create/lock the sidecar, check parameters, open
 *               the backing chain;
 *   copy-up.c   copy-up and copy-on-read of bit-0 clusters under the
 *               cluster range lock;
 *   common/addcow/addcow-store.c   the bitmap and when its bits may
 *               reach the sidecar (durability rules, poisoning);
 *   local-image.c   addcow-local-image=: the image is a local file and
 *               the plugin below the backing; every callback swaps
 *               them first (local_image_enter).
 *
 * Set up in three steps: .get_ready opens the sidecar (creating the
 * header when missing) and the backing file; .after_fork learns the
 * plugin's size and loads the bitmap for it (refusing an image whose
 * size no longer fits the sidecar at startup); the first .prepare learns
 * what the plugin promises, then hands the bitmap to the store with
 * the persistence mode that promise allows:
 *   multi-conn plugin        -> AT_FLUSH (a flush persists every bit)
 *   plugin without multi-conn -> AT_WRITE (a bit is persisted, after
 *                               its data, before it is visible)
 *   plugin that cannot flush -> AT_CLOSE (no flush or FUA offered)
 * A request whose clusters all have bit 1 goes straight through; a FUA
 * write does so only if those bits are durable too.  Once the store
 * is poisoned (a failed flush or FUA write of the plugin, a failed
 * sidecar sync) every write and flush fails with EIO until restart.
 *
 * Lock order: state_lock (setup only); then the cluster range lock
 * (copy-up.c), then the store's flush_lock, then its lock.
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

#include "addcow.h"
#include "addcow-store.h"
#include "cleanup.h"
#include "copy-up.h"
#include "extents.h"
#include "local-image.h"
#include "minmax.h"
#include "poisoned.h"
#include "qad-error.h"
#include "qad-limits.h"
#include "sidecar.h"

static struct sidecar_params params;    /* set in .config */
static bool on_read;                    /* addcow-on-read= */
static struct sidecar sc = { .fd = -1 }; /* opened in .get_ready */
static struct addcow_store_io sidecar_io;

/* The first .prepare sets up the store. */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static bool ready;                      /* state_lock protects it */

/* The bitmap .after_fork loaded for the plugin's size, handed to the
 * store by the first .prepare (state_lock protects them).
 */
static bool preloaded;
static uint64_t preloaded_size;
static uint8_t *preloaded_bitmap;
static uint64_t preloaded_len;

struct handle {
  bool can_write;               /* the plugin connection accepts writes */
};

static void
error_handler (const char *msg)
{
  nbdkit_error ("%s", msg);
}

static void
addcow_load (void)
{
  qad_set_error_handler (error_handler);
}

static void
addcow_unload (void)
{
  if (ready)
    addcow_store_free (&cow.store);
  free (preloaded_bitmap);
  cow_free ();
  sidecar_close (&sc);
  free (params.sidecar);
  free (params.backing);
  free (params.backing_format);
  free (params.image);
  free (params.plugin_file);
  free (params.backing_dir);
  local_image_close ();
}

static int
addcow_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  int taken = local_image_config (key, value);

  if (taken != 0)
    return taken == 1 ? 0 : -1;
  if (strcmp (key, "addcow") == 0) {
    free (params.sidecar);
    params.sidecar = nbdkit_absolute_path (value);
    return params.sidecar ? 0 : -1;
  }
  if (strcmp (key, "addcow-backing") == 0) {
    free (params.backing);
    if (addcow_name_is_uri (value))
      params.backing = strdup (value);
    else
      params.backing = nbdkit_realpath (value);
    if (params.backing == NULL) {
      nbdkit_error ("addcow-backing=%s: %m", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "addcow-backing-format") == 0) {
    if (!addcow_backing_format_defined (value)) {
      nbdkit_error ("addcow-backing-format=%s: must be raw or qed", value);
      return -1;
    }
    free (params.backing_format);
    params.backing_format = strdup (value);
    return params.backing_format ? 0 : -1;
  }
  if (strcmp (key, "addcow-cluster-size") == 0) {
    int64_t r = nbdkit_parse_size (value);
    if (r == -1)
      return -1;
    return addcow_cluster_bits_for (r, key, value, &params.cluster_bits);
  }
  if (strcmp (key, "addcow-image") == 0) {
    free (params.image);
    params.image = strdup (value);
    return params.image ? 0 : -1;
  }
  if (strcmp (key, "addcow-on-read") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    on_read = r;
    return 0;
  }
  if (strcmp (key, "addcow-backing-policy") == 0) {
    if (qad_backing_policy_parse (value, &params.backing_policy) == -1) {
      nbdkit_error ("addcow-backing-policy=%s: must be follow, inside or "
                    "refuse", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "addcow-backing-dir") == 0) {
    free (params.backing_dir);
    /* Resolve now: nbdkit chdirs to / when it daemonizes. */
    params.backing_dir = nbdkit_realpath (value);
    return params.backing_dir ? 0 : -1;
  }
  if (strcmp (key, "addcow-max-bitmap-size") == 0)
    return qad_set_limit (key, value, nbdkit_parse_size (value),
                          &qad_limits.max_bitmap_bytes);
  /* Remember the plugin's file (to record it and to check it against
   * the sidecar), then pass it on.
   */
  if (strcmp (key, "file") == 0) {
    free (params.plugin_file);
    params.plugin_file = nbdkit_absolute_path (value);
  }
  return next (nxdata, key, value);
}

static int
addcow_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (params.sidecar == NULL) {
    nbdkit_error ("the addcow=FILE.add-cow parameter is required");
    return -1;
  }
  if (params.backing_dir && params.backing_policy != QAD_BACKING_INSIDE) {
    nbdkit_error ("addcow-backing-dir= only has a meaning with "
                  "addcow-backing-policy=inside");
    return -1;
  }
  if (local_image_config_complete (&params) == -1)
    return -1;
  return next (nxdata);
}

#define addcow_config_help \
  "addcow=<FILE>              (required) The add-cow sidecar.\n" \
  "addcow-backing=<FILE|URI>  Backing file or NBD URI (at creation).\n" \
  "addcow-backing-format=raw|qed  Backing format (at creation).\n" \
  "addcow-cluster-size=<SIZE> Cluster size, 4K..2M (default 64K).\n" \
  "addcow-image=<NAME>        Image name recorded in the sidecar.\n" \
  "addcow-on-read=true|false  Copy-on-read (default false).\n" \
  "addcow-backing-policy=follow|inside|refuse  Which backing the sidecar\n" \
  "                           may open (default follow).\n" \
  "addcow-backing-dir=<DIR>   Also allowed by addcow-backing-policy=inside.\n" \
  "addcow-max-bitmap-size=<SIZE>  Largest COW bitmap (default 256M).\n" \
  "addcow-local-image=<FILE>  The image is this local raw file; the\n" \
  "                           plugin below is the backing.\n" \
  "addcow-backing-label=<LABEL>  With addcow-local-image=: the backing's\n" \
  "                           name recorded (default the plugin's url=)."

static int
addcow_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

static int
addcow_get_ready (int thread_model)
{
  if (local_image_open () == -1 || sidecar_open (&params, &sc) == -1)
    return -1;
  cow.backing = sc.backing;
  cow.cbits = sc.hdr.cluster_bits;
  cow.csize = UINT64_C (1) << cow.cbits;
  addcow_store_io_fd (&sidecar_io, &sc.fd);
  return 0;
}

/* First connection: load the bitmap for the plugin's size into the
 * store, persisting bits as the plugin's promises allow.
 */
static int
setup_store (uint64_t size, bool plugin_multi_conn, bool plugin_can_flush)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&state_lock);
  enum addcow_persist_mode mode;
  uint8_t *bitmap = NULL;
  uint64_t bmlen = 0;

  if (ready) {
    if (size != cow.disk_size) {
      nbdkit_error ("%s: the image's size changed from %" PRIu64 " to %"
                    PRIu64 " bytes while it is being served",
                    params.sidecar, cow.disk_size, size);
      return -1;
    }
    return 0;
  }
  mode = !plugin_can_flush ? ADDCOW_PERSIST_AT_CLOSE
    : plugin_multi_conn ? ADDCOW_PERSIST_AT_FLUSH : ADDCOW_PERSIST_AT_WRITE;
  if (preloaded && preloaded_size == size) {
    bitmap = preloaded_bitmap;
    bmlen = preloaded_len;
  }
  else {
    free (preloaded_bitmap);
    if (!(sc.hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) &&
        sidecar_load_bitmap (&sc, params.sidecar, size, &bitmap,
                             &bmlen) == -1)
      return -1;
  }
  preloaded = false;
  preloaded_bitmap = NULL;
  if (addcow_store_init (&cow.store, params.sidecar, &sidecar_io, mode,
                         sc.hdr.header_size, sc.hdr.compat_features, bitmap,
                         bmlen, addcow_nr_clusters (size, cow.cbits)) == -1) {
    free (bitmap);
    return -1;
  }
  cow.disk_size = size;
  nbdkit_debug ("addcow: %s: disk %" PRIu64 " bytes, %" PRIu64 " clusters "
                "of %" PRIu64 ", %" PRIu64 " in the image, backing %s; bits "
                "persisted %s", params.sidecar,
                size, cow.store.nclusters, cow.csize, cow.store.nr_set,
                sc.hdr.backing_file ? sc.hdr.backing_file : "none",
                mode == ADDCOW_PERSIST_AT_FLUSH ? "at flush"
                : mode == ADDCOW_PERSIST_AT_WRITE ? "at write"
                : "at a clean close (the plugin cannot flush: neither "
                  "flush nor FUA is offered)");
  ready = true;
  return 0;
}

/* Does the plugin still hold what the sidecar says is in the image?
 * A plugin that does not persist (memory) reads zeroes after a restart
 * where the bitmap says data was written.  Up to SAMPLES clusters with
 * bit 1 are looked up in the plugin's extents: when every one is a
 * hole reading as zeroes, warn (a sparse file may legitimately hold
 * zeroes there, so this is never an error).
 */
#define SAMPLES 16

static void
warn_if_not_persisted (nbdkit_next *next, uint64_t size,
                       const uint8_t *bitmap, uint64_t bmlen)
{
  uint64_t nclusters = addcow_nr_clusters (size, cow.cbits);
  uint64_t c = 0, holes = 0, sampled = 0, nr_set;
  int err;

  nr_set = bits_count (bitmap, 0, nclusters);
  if (nr_set == 0 || next->can_extents (next) != 1)
    return;
  while (sampled < SAMPLES &&
         (c = bits_find_set (bitmap, c, nclusters)) < nclusters) {
    uint64_t off = c << cow.cbits;
    uint32_t len = MIN (cow.csize, size - off);
    struct nbdkit_extents *ex = nbdkit_extents_new (off, off + len);
    struct nbdkit_extent e;

    if (ex == NULL)
      return;
    if (next->extents (next, len, off, 0, ex, &err) == -1 ||
        nbdkit_extents_count (ex) == 0) {
      nbdkit_extents_free (ex);
      return;
    }
    e = nbdkit_get_extent (ex, 0);
    if ((e.type & (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO)) ==
        (NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO) &&
        e.offset + e.length >= off + len)
      holes++;
    nbdkit_extents_free (ex);
    sampled++;
    c++;
  }
  if (sampled > 0 && holes == sampled) {
    flockfile (stderr);
    fprintf (stderr, "nbdkit: addcow: warning: %s says %" PRIu64
             " clusters are in the image, but the plugin holds nothing "
             "there (%" PRIu64 " of them checked): if the plugin does not "
             "keep data across restarts (memory), they now read as "
             "zeroes; start a scratch overlay with a new sidecar\n",
             params.sidecar, nr_set, sampled);
    funlockfile (stderr);
  }
}

/* Learn the plugin's size at startup (nbdkit 1.32 gives a filter a
 * backend only here) and load the bitmap for it, so that an image that
 * grew or shrank since the sidecar was made is refused before any
 * client connects, in one line with both sizes.
 */
static int
addcow_after_fork (nbdkit_backend *backend)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&state_lock);
  nbdkit_next *next, *image;
  int64_t size;
  int r = -1;

  next = nbdkit_next_context_open (backend, 1, "", 1);
  if (next == NULL)
    return -1;
  if (next->prepare (next) == -1) {
    nbdkit_next_context_close (next);
    return -1;
  }
  if (local_image_size_new (next, sc.file_size == sc.hdr.header_size) == -1)
    goto out;
  image = local_image_enter (next);
  size = image->get_size (image);
  if (size == -1)
    goto out;
  /* A fresh sidecar (header only) fits any size: it is sized by the
   * first .prepare, so that a server no client used leaves it fresh.
   */
  if (sc.hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED ||
      sc.file_size == sc.hdr.header_size) {
    r = 0;
    goto out;
  }
  if (sidecar_load_bitmap (&sc, params.sidecar, size, &preloaded_bitmap,
                           &preloaded_len) == -1)
    goto out;
  preloaded = true;
  preloaded_size = size;
  warn_if_not_persisted (image, size, preloaded_bitmap, preloaded_len);
  r = 0;
 out:
  next->finalize (next);
  nbdkit_next_context_close (next);
  return r;
}

static void *
addcow_open (nbdkit_next_open *next, nbdkit_context *nxdata,
             int readonly, const char *exportname, int is_tls)
{
  struct handle *h;

  /* Copy-on-read writes to the plugin even for a read-only client;
   * a plugin that is the backing (addcow-local-image=) is never
   * written.
   */
  if (next (nxdata, local_image_mode () || (readonly && !on_read),
            exportname) == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  return h;
}

static void
addcow_close (void *handle)
{
  free (handle);
}

static int
addcow_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct handle *h = handle;
  int64_t size;
  int r, multi;

  if (local_image_prepare (next, &cow.backing) == -1)
    return -1;
  next = local_image_enter (next);
  size = next->get_size (next);
  if (size == -1)
    return -1;
  r = next->can_write (next);
  if (r == -1)
    return -1;
  h->can_write = r;
  multi = next->can_multi_conn (next);
  if (multi == -1)
    return -1;
  r = next->can_flush (next);
  if (r == -1)
    return -1;
  return setup_store (size, multi == 1, r == 1);
}

/* The store's image flush: the plugin below. */
struct plugin_flush {
  nbdkit_next *next;
  int err;
};

static int
plugin_flush (void *opaque)
{
  struct plugin_flush *pf = opaque;

  if (pf->next->flush (pf->next, 0, &pf->err) == -1) {
    errno = pf->err;
    return -1;
  }
  return 0;
}

static int
do_flush (nbdkit_next *next, int *err)
{
  struct plugin_flush pf = { .next = next, .err = 0 };

  if (addcow_store_flush (&cow.store, plugin_flush, &pf) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* A clean disconnect persists what this server set (as a flush). */
static int
addcow_finalize (nbdkit_next *next, void *handle)
{
  int err = 0;

  next = local_image_enter (next);
  if (!addcow_store_poisoned (&cow.store) &&
      addcow_store_have_dirty (&cow.store) && do_flush (next, &err) == -1)
    return -1;
  return 0;
}

/* The disk is the image (with addcow-local-image=, not the plugin). */
static int64_t
addcow_get_size (nbdkit_next *next, void *handle)
{
  next = local_image_enter (next);
  return next->get_size (next);
}

/* Advertise the cluster size as the preferred block size, so that
 * well-behaved clients write whole clusters and avoid copy-up reads.
 */
static int
addcow_block_size (nbdkit_next *next, void *handle, uint32_t *minimum,
                   uint32_t *preferred, uint32_t *maximum)
{
  next = local_image_enter (next);
  if (next->block_size (next, minimum, preferred, maximum) == -1)
    return -1;
  if (*minimum == 0) {          /* the plugin has no constraints */
    *minimum = 1;
    *preferred = 4096;
    *maximum = 0xffffffff;
  }
  if (cow.csize > *preferred && cow.csize <= *maximum)
    *preferred = cow.csize;
  return 0;
}

/* ---- can_* : every one explicit (see DESIGN: nbdkit 1.32 facts) ---- */

static int
addcow_can_write (nbdkit_next *next, void *handle)
{
  next = local_image_enter (next);
  return next->can_write (next);
}

/* A plugin that cannot flush cannot make anything durable: offer
 * neither flush nor FUA then (persist mode AT_CLOSE).
 */
static int
addcow_can_flush (nbdkit_next *next, void *handle)
{
  next = local_image_enter (next);
  return next->can_flush (next);
}

static int
addcow_can_fua (nbdkit_next *next, void *handle)
{
  int r;

  next = local_image_enter (next);
  r = next->can_flush (next);
  if (r == -1)
    return -1;
  return r ? NBDKIT_FUA_NATIVE : NBDKIT_FUA_NONE;
}

static int
addcow_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

static int
addcow_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
addcow_can_trim (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
addcow_can_extents (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
addcow_can_multi_conn (nbdkit_next *next, void *handle)
{
  next = local_image_enter (next);
  return next->can_multi_conn (next);
}

/* With copy-on-read, NBD_CMD_CACHE prefetches: nbdkit emulates it
 * with a pread, which copies the clusters into the image.
 */
static int
addcow_can_cache (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  return on_read && h->can_write ? NBDKIT_CACHE_EMULATE : NBDKIT_CACHE_NONE;
}

/* ---- NBD operations ---- */

static int
addcow_pread (nbdkit_next *next, void *handle, void *vbuf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct handle *h = handle;
  char *buf = vbuf;
  uint64_t end = offset + count;

  next = local_image_enter (next);
  if (addcow_store_all_set (&cow.store))
    return next->pread (next, buf, count, offset, flags, err);

  while (offset < end) {
    bool v;
    uint64_t rend = cow_run_end (offset, end, &v);
    uint64_t n = rend - offset;
    int r;

    if (v)
      r = next->pread (next, buf, n, offset, 0, err);
    else if (!on_read || !h->can_write)
      r = cow_backing_read (buf, n, offset, err);
    else
      r = cow_read_copying (next, buf, n, offset, err);
    if (r == -1)
      return -1;
    buf += n;
    offset = rend;
  }
  return 0;
}

/* Write or zero [OFFSET, OFFSET+COUNT) (BUF NULL: zeroes, ZFLAGS). */
static int
write_or_zero (nbdkit_next *next, const void *buf, uint32_t count,
               uint64_t offset, uint32_t zflags, bool fua, int *err)
{
  uint64_t c0 = offset >> cow.cbits;
  uint64_t c1 = ((offset + count - 1) >> cow.cbits) + 1;

  if (addcow_store_range_set (&cow.store, c0, c1)) {
    /* FUA may go straight down only if the bits are durable too. */
    bool direct_fua = fua && addcow_store_range_durable (&cow.store, c0, c1);
    if (cow_image_write (next, buf, count, offset, zflags, direct_fua,
                         err) == -1)
      return -1;
    if (direct_fua)
      return 0;
  }
  else if (cow_write_slow (next, buf ? COW_WRITE : COW_ZERO, buf, count,
                           offset, zflags, err) == -1)
    return -1;
  return fua ? do_flush (next, err) : 0;
}

static int
addcow_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  next = local_image_enter (next);
  if (refuse_if_poisoned (addcow_store_poisoned (&cow.store), err) == -1)
    return -1;
  return write_or_zero (next, buf, count, offset, 0,
                        flags & NBDKIT_FLAG_FUA, err);
}

static int
addcow_zero (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0 = offset >> cow.cbits;
  uint64_t c1 = ((offset + count - 1) >> cow.cbits) + 1;
  uint32_t zflags = flags & NBDKIT_FLAG_MAY_TRIM;

  next = local_image_enter (next);
  if (refuse_if_poisoned (addcow_store_poisoned (&cow.store), err) == -1)
    return -1;
  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    /* Fast only if nothing needs copying up and the plugin is fast. */
    uint64_t head = offset & (cow.csize - 1);
    uint64_t tail = (offset + count) & (cow.csize - 1);
    struct addcow_store *st = &cow.store;
    if (next->can_fast_zero (next) != 1 ||
        (!addcow_store_range_set (st, c0, c1) &&
         ((head && !addcow_store_range_set (st, c0, c0 + 1)) ||
          (tail && offset + count != cow.disk_size &&
           !addcow_store_range_set (st, c1 - 1, c1))))) {
      *err = ENOTSUP;
      return -1;
    }
    zflags |= NBDKIT_FLAG_FAST_ZERO;
  }
  return write_or_zero (next, NULL, count, offset, zflags,
                        flags & NBDKIT_FLAG_FUA, err);
}

static int
addcow_trim (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t end = offset + count;
  int r;

  next = local_image_enter (next);
  if (refuse_if_poisoned (addcow_store_poisoned (&cow.store), err) == -1)
    return -1;
  r = next->can_trim (next);
  if (r == -1) {
    *err = EIO;
    return -1;
  }
  /* Only the image's clusters are trimmed; bit-0 clusters keep
   * reading from the backing file.
   */
  while (r == 1 && offset < end) {
    bool v;
    uint64_t rend = cow_run_end (offset, end, &v);

    if (v && next->trim (next, rend - offset, offset, 0, err) == -1)
      return -1;
    offset = rend;
  }
  return flags & NBDKIT_FLAG_FUA ? do_flush (next, err) : 0;
}

static int
addcow_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  next = local_image_enter (next);
  return do_flush (next, err);
}

static int
addcow_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  next = local_image_enter (next);
  return cow_extents (next, count, offset, flags, extents, err);
}

static struct nbdkit_filter filter = {
  .name              = "addcow",
  .longname          = "nbdkit add-cow filter",
  .load              = addcow_load,
  .unload            = addcow_unload,
  .config            = addcow_config,
  .config_complete   = addcow_config_complete,
  .config_help       = addcow_config_help,
  .thread_model      = addcow_thread_model,
  .get_ready         = addcow_get_ready,
  .after_fork        = addcow_after_fork,
  .open              = addcow_open,
  .close             = addcow_close,
  .prepare           = addcow_prepare,
  .finalize          = addcow_finalize,
  .get_size          = addcow_get_size,
  .block_size        = addcow_block_size,
  .can_write         = addcow_can_write,
  .can_flush         = addcow_can_flush,
  .can_fua           = addcow_can_fua,
  .can_zero          = addcow_can_zero,
  .can_fast_zero     = addcow_can_fast_zero,
  .can_trim          = addcow_can_trim,
  .can_extents       = addcow_can_extents,
  .can_multi_conn    = addcow_can_multi_conn,
  .can_cache         = addcow_can_cache,
  .pread             = addcow_pread,
  .pwrite            = addcow_pwrite,
  .zero              = addcow_zero,
  .trim              = addcow_trim,
  .flush             = addcow_flush,
  .extents           = addcow_extents,
};

NBDKIT_REGISTER_FILTER (filter)
