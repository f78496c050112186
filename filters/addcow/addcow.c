/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * The plugin below this filter is the raw image; the add-cow sidecar
 * (header + COW bitmap, docs/specs/add-cow.txt) and the backing file
 * belong to the filter.  The format half (parse, validate, create,
 * bitmap geometry) is common/addcow; this file is NBD semantics.
 *
 * State shared by every connection, set up in two steps:
 *  - .get_ready opens (or creates, header only: "fresh") the sidecar,
 *    checks the parameters against it, locks it and opens the backing;
 *  - the first .prepare learns the disk size from the plugin and loads
 *    (or, when fresh, sizes) the bitmap.
 *
 * Invariants:
 *  - A bit goes 0 -> 1 only after the whole cluster's data has been
 *    written to the plugin; bits never go back to 0.
 *  - Work on bit-0 clusters (copy-up, zeroing, copy-on-read) holds the
 *    cluster range lock, and re-reads the bits once it has it.  A
 *    request that finds all its clusters at 1 goes straight through
 *    with no lock but a short bitmap_lock to read the bits.
 *  - A bit is persisted only once its cluster's data is durable.  How
 *    that is ensured depends on the plugin (enum persist_mode, chosen
 *    by the first connection; docs/specs/add-cow.txt "Durability"):
 *    AT_FLUSH (multi-conn plugin): a flush snapshots the dirty bitmap
 *      chunks, flushes the plugin (which covers every connection's
 *      writes), then writes the snapshot and fdatasyncs the sidecar,
 *      under flush_lock so that an older snapshot never overwrites a
 *      newer one.  Bits set after the snapshot wait for the next
 *      flush.  "durable" holds what the sidecar is known to hold: a
 *      FUA write may go straight down only into clusters whose bits
 *      are durable, else it takes the whole flush sequence.
 *    AT_WRITE (plugin without multi-conn): a flush on one connection
 *      need not cover another's writes, so a copy-up's data is written
 *      with FUA and its bit persisted (under flush_lock) before the
 *      bit is set in memory.  Whoever sees a 1 sees a durable bit over
 *      durable data, and a flush only has to flush the plugin.
 *    AT_CLOSE (plugin that cannot flush): nothing can be made durable,
 *      so the filter advertises neither flush nor FUA; bits are
 *      written when a connection closes cleanly.
 *  - ALL_ALLOCATED is persisted only after every bit is durable.
 *  - After a failed plugin flush, a failed FUA request or a failed
 *    fdatasync of the sidecar, durability is in doubt (the kernel may
 *    have dropped the pages): the filter is "poisoned" and fails
 *    every later write, zero, trim and flush with EIO until restart.
 *
 * Lock order: clusters (range lock) -> flush_lock -> bitmap_lock.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "addcow.h"
#include "addcow-file.h"
#include "blockdev.h"
#include "cleanup.h"
#include "full-io.h"
#include "ispowerof2.h"
#include "minmax.h"
#include "nbd-backing.h"
#include "qad-error.h"
#include "qed-image.h"
#include "rangelock.h"

/* Bitmap bytes per dirty-tracking chunk. */
#define CHUNK 4096

/* ---- parameters (set in .config, read-only afterwards) ---- */
static char *sidecar;                   /* addcow=, absolute */
static char *backing_param;             /* absolute path or URI */
static char *backing_format_param;
static uint32_t cluster_bits_param;     /* 0: not given */
static char *image_param;               /* addcow-image= as given */
static char *plugin_file;               /* the plugin's file=, absolute */
static bool on_read;                    /* addcow-on-read= */

/* ---- set up in .get_ready, read-only afterwards ---- */
static int fd = -1;                     /* the sidecar, locked */
static struct addcow_header hdr;        /* compat_features: bitmap_lock */
static uint32_t cbits;                  /* cluster_bits */
static uint64_t csize;                  /* cluster size */
static struct qad_blockdev *backing;    /* NULL: none (zeroes) */

enum persist_mode {
  PERSIST_AT_FLUSH,             /* multi-conn plugin */
  PERSIST_AT_WRITE,             /* plugin without multi-conn */
  PERSIST_AT_CLOSE,             /* plugin that cannot flush */
};

/* Set up once by the first .prepare. */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
/* state_lock protects: ready, and the setting of disk_size, nclusters,
 * mode, bitmap, bmlen, dirty, durable, nr_set (afterwards only
 * bitmap_lock matters).
 */
static bool ready;
static uint64_t disk_size, nclusters;
static enum persist_mode mode;

static pthread_mutex_t bitmap_lock = PTHREAD_MUTEX_INITIALIZER;
/* bitmap_lock protects: bitmap, dirty, durable, nr_set and
 * hdr.compat_features.  Never held across I/O.
 */
static uint8_t *bitmap;                 /* NULL when all allocated */
static uint64_t bmlen;
static uint8_t *dirty;                  /* one flag per CHUNK of bitmap
                                           not yet written (AT_FLUSH,
                                           AT_CLOSE) */
static uint8_t *durable;                /* AT_FLUSH: the bits the sidecar
                                           holds after an fdatasync */
static uint64_t nr_set;

/* Set when durability is in doubt; only goes false -> true. */
static bool poisoned;

/* Set once every bit is 1 (or the sidecar says ALL_ALLOCATED): from
 * then on every request passes straight through.  Only goes false ->
 * true, so it is read with an atomic load and no lock (a stale false
 * only sends the request down the checked path).
 */
static bool all_allocated_flag;

static inline bool
all_allocated (void)
{
  return __atomic_load_n (&all_allocated_flag, __ATOMIC_ACQUIRE);
}

static inline void
set_all_allocated (void)
{
  __atomic_store_n (&all_allocated_flag, true, __ATOMIC_RELEASE);
}

static inline bool
is_poisoned (void)
{
  return __atomic_load_n (&poisoned, __ATOMIC_ACQUIRE);
}

/* Durability is in doubt after WHAT failed with ERR: from now on every
 * write and flush fails (one line in the log, the first time).
 */
static void
poison (const char *what, int err)
{
  if (!__atomic_exchange_n (&poisoned, true, __ATOMIC_ACQ_REL))
    nbdkit_error ("%s: %s failed (%s): what was written may not be "
                  "durable; refusing every write and flush until restart",
                  sidecar, what, strerror (err));
}

static int
refuse_if_poisoned (int *err)
{
  if (is_poisoned ()) {
    *err = EIO;
    return -1;
  }
  return 0;
}

/* Serialises the flush sequence (snapshot, plugin flush, persist) and,
 * in AT_WRITE mode, every write to the sidecar.
 */
static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;

/* Bit-0 cluster work; see rangelock.h. */
static struct rangelock clusters = RANGELOCK_INIT;

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
  if (fd >= 0)
    close (fd);
  qad_blockdev_close (backing);
  addcow_header_free (&hdr);
  free (bitmap);
  free (durable);
  free (dirty);
  rangelock_free (&clusters);
  free (sidecar);
  free (backing_param);
  free (backing_format_param);
  free (image_param);
  free (plugin_file);
}

static int
addcow_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  if (strcmp (key, "addcow") == 0) {
    free (sidecar);
    sidecar = nbdkit_absolute_path (value);
    return sidecar ? 0 : -1;
  }
  if (strcmp (key, "addcow-backing") == 0) {
    free (backing_param);
    if (addcow_name_is_uri (value))
      backing_param = strdup (value);
    else
      backing_param = nbdkit_realpath (value);
    if (backing_param == NULL) {
      nbdkit_error ("addcow-backing=%s: %m", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "addcow-backing-format") == 0) {
    if (strcmp (value, "raw") != 0 && strcmp (value, "qed") != 0) {
      nbdkit_error ("addcow-backing-format=%s: must be raw or qed", value);
      return -1;
    }
    free (backing_format_param);
    backing_format_param = strdup (value);
    return backing_format_param ? 0 : -1;
  }
  if (strcmp (key, "addcow-cluster-size") == 0) {
    int64_t r = nbdkit_parse_size (value);
    if (r == -1)
      return -1;
    if (!is_power_of_2 (r) ||
        r < (INT64_C (1) << ADDCOW_MIN_CLUSTER_BITS) ||
        r > (INT64_C (1) << ADDCOW_MAX_CLUSTER_BITS)) {
      nbdkit_error ("addcow-cluster-size=%s: must be a power of 2 "
                    "between 4K and 2M", value);
      return -1;
    }
    cluster_bits_param = log_2_bits (r);
    return 0;
  }
  if (strcmp (key, "addcow-image") == 0) {
    free (image_param);
    image_param = strdup (value);
    return image_param ? 0 : -1;
  }
  if (strcmp (key, "addcow-on-read") == 0) {
    int r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    on_read = r;
    return 0;
  }
  /* Remember the plugin's file (to record it and to check it against
   * the sidecar), then pass it on.
   */
  if (strcmp (key, "file") == 0) {
    free (plugin_file);
    plugin_file = nbdkit_absolute_path (value);
  }
  return next (nxdata, key, value);
}

static int
addcow_config_complete (nbdkit_next_config_complete *next,
                        nbdkit_backend *nxdata)
{
  if (sidecar == NULL) {
    nbdkit_error ("the addcow=FILE.add-cow parameter is required");
    return -1;
  }
  return next (nxdata);
}

#define addcow_config_help \
  "addcow=<FILE>              (required) The add-cow sidecar.\n" \
  "addcow-backing=<FILE|URI>  Backing file or NBD URI (at creation).\n" \
  "addcow-backing-format=raw|qed  Backing format (at creation).\n" \
  "addcow-cluster-size=<SIZE> Cluster size, 4K..2M (default 64K).\n" \
  "addcow-image=<NAME>        Image name recorded in the sidecar.\n" \
  "addcow-on-read=true|false  Copy-on-read (default false)."

static int
addcow_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

/* Same file?  Compares device and inode when both exist, else names. */
static bool
same_file (const char *a, const char *b)
{
  struct stat sa, sb;

  if (stat (a, &sa) == 0 && stat (b, &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  return strcmp (a, b) == 0;
}

static int
create_sidecar (void)
{
  struct addcow_header h;
  CLEANUP_FREE char *image_name = NULL;
  CLEANUP_FREE char *backing_name = NULL;
  const char *bfmt = NULL;
  int r;

  if (image_param)
    image_name = strdup (image_param);
  else if (plugin_file)
    image_name = addcow_relative_name (sidecar, plugin_file);
  else {
    nbdkit_error ("%s: creating a new add-cow file needs the image's name: "
                  "use addcow-image=NAME (the plugin has no file= "
                  "parameter to take it from)", sidecar);
    return -1;
  }
  if (image_name == NULL)
    return -1;

  if (backing_param) {
    if (plugin_file && !addcow_name_is_uri (backing_param) &&
        same_file (backing_param, plugin_file)) {
      nbdkit_error ("%s: addcow-backing=%s is the image the plugin serves "
                    "(%s): an image cannot be its own backing file",
                    sidecar, backing_param, plugin_file);
      return -1;
    }
    backing_name = addcow_relative_name (sidecar, backing_param);
    if (backing_name == NULL)
      return -1;
    bfmt = backing_format_param;
    if (bfmt == NULL) {
      if (!addcow_name_is_uri (backing_param) &&
          qed_file_has_magic (backing_param)) {
        nbdkit_error ("%s: the backing file %s starts with a QED header; "
                      "formats are never probed: say "
                      "addcow-backing-format=qed (or =raw)",
                      sidecar, backing_param);
        return -1;
      }
      bfmt = "raw";
    }
    if (addcow_name_is_uri (backing_param) && strcmp (bfmt, "raw") != 0) {
      nbdkit_error ("%s: an NBD backing (%s) must have format raw, not %s",
                    sidecar, backing_param, bfmt);
      return -1;
    }
  }
  else if (backing_format_param) {
    nbdkit_error ("addcow-backing-format given without addcow-backing");
    return -1;
  }

  if (addcow_header_init (&h, cluster_bits_param ? cluster_bits_param
                          : ADDCOW_DEFAULT_CLUSTER_BITS,
                          image_name, "raw", backing_name, bfmt) == -1)
    return -1;
  r = addcow_create_file (sidecar, &h, false, 0);
  addcow_header_free (&h);
  if (r == 0)
    nbdkit_debug ("addcow: created %s", sidecar);
  return r;
}

/* Parameters must agree with what the sidecar records. */
static int
check_params_against_header (void)
{
  CLEANUP_FREE char *image = NULL;
  CLEANUP_FREE char *bk = NULL;

  if (cluster_bits_param && cluster_bits_param != hdr.cluster_bits) {
    nbdkit_error ("%s: addcow-cluster-size=%" PRIu64 " contradicts the "
                  "cluster size %" PRIu64 " recorded in the file",
                  sidecar, UINT64_C (1) << cluster_bits_param,
                  UINT64_C (1) << hdr.cluster_bits);
    return -1;
  }
  if (strcmp (hdr.image_format, "raw") != 0) {
    nbdkit_error ("%s: image file format \"%s\" is not supported "
                  "(only raw)", sidecar, hdr.image_format);
    return -1;
  }
  if (image_param && strcmp (image_param, hdr.image_file) != 0) {
    nbdkit_error ("%s: addcow-image=%s contradicts the image name \"%s\" "
                  "recorded in the file", sidecar, image_param,
                  hdr.image_file);
    return -1;
  }
  image = addcow_resolve_name (sidecar, hdr.image_file);
  if (image == NULL)
    return -1;
  if (plugin_file && access (image, F_OK) == 0 &&
      !same_file (image, plugin_file)) {
    nbdkit_error ("%s: records the image %s, but the plugin serves %s",
                  sidecar, image, plugin_file);
    return -1;
  }
  if (same_file (image, sidecar) ||
      (plugin_file && same_file (plugin_file, sidecar))) {
    nbdkit_error ("%s: the sidecar is the image file itself", sidecar);
    return -1;
  }

  if (hdr.backing_file == NULL) {
    if (backing_param) {
      nbdkit_error ("%s: addcow-backing=%s given, but the file records "
                    "no backing file", sidecar, backing_param);
      return -1;
    }
    return 0;
  }
  bk = addcow_resolve_name (sidecar, hdr.backing_file);
  if (bk == NULL)
    return -1;
  if (backing_param) {
    bool same = addcow_name_is_uri (bk) || addcow_name_is_uri (backing_param)
      ? strcmp (bk, backing_param) == 0 : same_file (bk, backing_param);
    if (!same) {
      nbdkit_error ("%s: addcow-backing=%s contradicts the backing file "
                    "%s recorded in the file", sidecar, backing_param, bk);
      return -1;
    }
  }
  if (backing_format_param &&
      strcmp (backing_format_param, hdr.backing_format) != 0) {
    nbdkit_error ("%s: addcow-backing-format=%s contradicts the backing "
                  "format %s recorded in the file", sidecar,
                  backing_format_param, hdr.backing_format);
    return -1;
  }
  return 0;
}

/* The files a backing chain must not contain: the sidecar and the
 * image (by device and inode: another name, a symbolic link or a hard
 * link is the same file).  Returns how many it filled in.
 */
static size_t
files_outside_chain (struct qed_file_id ids[2])
{
  CLEANUP_FREE char *image = NULL;
  struct stat st;
  size_t n = 0;

  if (fstat (fd, &st) == 0)
    ids[n++] = (struct qed_file_id) { st.st_dev, st.st_ino, "the sidecar" };
  image = plugin_file ? strdup (plugin_file)
    : addcow_resolve_name (sidecar, hdr.image_file);
  if (image && stat (image, &st) == 0)
    ids[n++] = (struct qed_file_id) { st.st_dev, st.st_ino, "the image" };
  return n;
}

static int
open_backing (void)
{
  CLEANUP_FREE char *bk = NULL;
  struct qed_file_id excluded[2];
  size_t nr_excluded;

  if (hdr.backing_file == NULL)
    return 0;
  bk = addcow_resolve_name (sidecar, hdr.backing_file);
  if (bk == NULL)
    return -1;
  if (addcow_name_is_uri (bk)) {
    if (strcmp (hdr.backing_format, "raw") != 0) {
      nbdkit_error ("%s: backing format %s over NBD is not supported "
                    "(only raw)", sidecar, hdr.backing_format);
      return -1;
    }
    backing = nbd_backing_open (bk);
  }
  else if (strcmp (hdr.backing_format, "raw") == 0 ||
           strcmp (hdr.backing_format, "qed") == 0) {
    /* Read-only, with its own backing chain, read-locked as QEMU does. */
    nr_excluded = files_outside_chain (excluded);
    backing = qed_open_backing_excluding (bk, hdr.backing_format, true,
                                          excluded, nr_excluded);
  }
  else {
    nbdkit_error ("%s: backing file format \"%s\" is not supported "
                  "(raw or qed)", sidecar, hdr.backing_format);
    return -1;
  }
  if (backing == NULL) {
    nbdkit_error ("%s: cannot open the backing file %s (%s) recorded in it",
                  sidecar, bk, hdr.backing_format);
    return -1;
  }
  nbdkit_debug ("addcow: backing %s (%s), %" PRIu64 " bytes",
                bk, hdr.backing_format, backing->size);
  return 0;
}

static int
addcow_get_ready (int thread_model)
{
  uint64_t file_size;

  fd = open (sidecar, O_RDWR | O_CLOEXEC);
  if (fd == -1 && errno == ENOENT) {
    if (create_sidecar () == -1)
      return -1;
    fd = open (sidecar, O_RDWR | O_CLOEXEC);
  }
  if (fd == -1) {
    nbdkit_error ("%s: %m", sidecar);
    return -1;
  }
  if (addcow_lock_fd (fd, sidecar) == -1 ||
      addcow_read_header (fd, sidecar, &hdr, &file_size) == -1 ||
      check_params_against_header () == -1)
    return -1;
  cbits = hdr.cluster_bits;
  csize = UINT64_C (1) << cbits;

  if (hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) {
    nbdkit_debug ("addcow: %s is ALL_ALLOCATED: serving the image alone",
                  sidecar);
    set_all_allocated ();
    return 0;
  }
  return open_backing ();
}

/* First connection: load or size the bitmap for the plugin's size,
 * and choose how bits are persisted.
 */
static int
setup_bitmap (uint64_t size, bool plugin_multi_conn, bool plugin_can_flush)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&state_lock);
  uint64_t file_size;
  struct stat st;
  bool fresh;

  if (ready) {
    if (size != disk_size) {
      nbdkit_error ("%s: the image's size changed from %" PRIu64 " to %"
                    PRIu64 " bytes while it is being served",
                    sidecar, disk_size, size);
      return -1;
    }
    return 0;
  }
  disk_size = size;
  nclusters = addcow_nr_clusters (size, cbits);
  mode = !plugin_can_flush ? PERSIST_AT_CLOSE
    : plugin_multi_conn ? PERSIST_AT_FLUSH : PERSIST_AT_WRITE;
  if (all_allocated ()) {
    ready = true;
    return 0;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", sidecar);
    return -1;
  }
  file_size = st.st_size;
  if (addcow_load_bitmap (fd, sidecar, &hdr, file_size, size,
                          &bitmap, &bmlen, &fresh) == -1)
    return -1;
  if (fresh) {
    if (ftruncate (fd, hdr.header_size + bmlen) == -1 ||
        fdatasync (fd) == -1) {
      nbdkit_error ("%s: sizing the bitmap to %" PRIu64 " bytes: %m",
                    sidecar, bmlen);
      return -1;
    }
  }
  dirty = calloc (bmlen / CHUNK + 1, 1);
  if (dirty == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  if (mode == PERSIST_AT_FLUSH) {
    durable = malloc (bmlen ? bmlen : 1);
    if (durable == NULL) {
      nbdkit_error ("malloc: %m");
      return -1;
    }
    memcpy (durable, bitmap, bmlen);
  }
  nr_set = addcow_bitmap_count (bitmap, nclusters);
  nbdkit_debug ("addcow: disk %" PRIu64 " bytes, %" PRIu64 " clusters of %"
                PRIu64 ", %" PRIu64 " in the image%s; bits persisted %s",
                size, nclusters, csize, nr_set, fresh ? " (new bitmap)" : "",
                mode == PERSIST_AT_FLUSH ? "at flush"
                : mode == PERSIST_AT_WRITE ? "at write" : "at close");
  if (mode == PERSIST_AT_CLOSE)
    nbdkit_debug ("addcow: the plugin cannot flush: neither flush nor FUA "
                  "is offered, and bits are written at a clean close");
  if (nr_set == nclusters && nclusters > 0)
    set_all_allocated ();       /* the header is updated at next flush */
  ready = true;
  return 0;
}

static void *
addcow_open (nbdkit_next_open *next, nbdkit_context *nxdata,
             int readonly, const char *exportname, int is_tls)
{
  struct handle *h;

  /* Copy-on-read writes to the plugin even for a read-only client. */
  if (next (nxdata, readonly && !on_read, exportname) == -1)
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
  bool multi;
  int r;

  size = next->get_size (next);
  if (size == -1)
    return -1;
  r = next->can_write (next);
  if (r == -1)
    return -1;
  h->can_write = r;
  r = next->can_multi_conn (next);
  if (r == -1)
    return -1;
  multi = r == 1;
  r = next->can_flush (next);
  if (r == -1)
    return -1;
  return setup_bitmap (size, multi, r == 1);
}

/* ---- bitmap helpers ---- */

static bool
range_all_set (uint64_t c0, uint64_t c1)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
  bool v;

  if (all_allocated ())
    return true;
  return addcow_bitmap_run (bitmap, c0, c1, &v) == c1 - c0 && v;
}

/* Are the bits of clusters [C0, C1) all 1 in the sidecar itself (so
 * that a FUA write into them needs nothing but the plugin's FUA)?
 */
static bool
range_all_durable (uint64_t c0, uint64_t c1)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
  bool v;

  if (hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)
    return true;
  switch (mode) {
  case PERSIST_AT_WRITE:        /* memory bits are durable bits */
    return addcow_bitmap_run (bitmap, c0, c1, &v) == c1 - c0 && v;
  case PERSIST_AT_FLUSH:
    return addcow_bitmap_run (durable, c0, c1, &v) == c1 - c0 && v;
  case PERSIST_AT_CLOSE:        /* nothing is ever durable */
  default:
    return false;
  }
}

/* Run of equal bits from cluster C, at most to END. */
static uint64_t
bit_run (uint64_t c, uint64_t end, bool *v)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);

  if (all_allocated ()) {
    *v = true;
    return end - c;
  }
  return addcow_bitmap_run (bitmap, c, end, v);
}

/* Set bits [C0, C1) in the in-memory bitmap; caller holds bitmap_lock.
 * MARK_DIRTY: the chunks must be written by a later flush.
 */
static void
set_bits_in_memory (uint64_t c0, uint64_t c1, bool mark_dirty)
{
  uint64_t c;

  for (c = c0; c < c1; ++c) {
    if (!bit_test (bitmap, c)) {
      bit_set (bitmap, c);
      if (mark_dirty)
        dirty[(c >> 3) / CHUNK] = 1;
      nr_set++;
    }
  }
  if (nr_set == nclusters && !all_allocated ()) {
    nbdkit_debug ("addcow: every cluster is in the image now");
    set_all_allocated ();
  }
}

/* Write the header's compat features with ALL_ALLOCATED set.  The
 * bitmap must already be durable.  Caller holds flush_lock.
 */
static int
persist_all_allocated (int *err)
{
  uint64_t features;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    features = hdr.compat_features | ADDCOW_COMPAT_ALL_ALLOCATED;
  }
  if (addcow_write_compat_features (fd, sidecar, features) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  if (fdatasync (fd) == -1) {
    *err = errno;
    poison ("fdatasync of the sidecar", errno);
    return -1;
  }
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    hdr.compat_features = features;
  }
  nbdkit_debug ("addcow: %s: set ALL_ALLOCATED", sidecar);
  return 0;
}

/* AT_WRITE: persist bits [C0, C1) (their data is durable), then set
 * them in memory.  Every sidecar write in this mode happens under
 * flush_lock, and memory bits are set only once durable, so the bytes
 * written here hold every bit persisted before.
 */
static int
persist_bits_now (uint64_t c0, uint64_t c1, int *err)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&flush_lock);
  uint64_t b0 = c0 >> 3, b1 = ((c1 - 1) >> 3) + 1, c;
  CLEANUP_FREE uint8_t *bytes = malloc (b1 - b0);
  bool all;

  if (bytes == NULL) {
    *err = errno;
    nbdkit_error ("malloc: %m");
    return -1;
  }
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    memcpy (bytes, bitmap + b0, b1 - b0);
  }
  for (c = c0; c < c1; ++c)
    bit_set (bytes, c - b0 * 8);
  if (full_pwrite (fd, bytes, b1 - b0, hdr.header_size + b0) == -1) {
    *err = errno;
    nbdkit_error ("%s: writing bitmap at offset %" PRIu64 ": %m",
                  sidecar, hdr.header_size + b0);
    return -1;
  }
  if (fdatasync (fd) == -1) {
    *err = errno;
    poison ("fdatasync of the sidecar", errno);
    return -1;
  }
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    set_bits_in_memory (c0, c1, false);
    all = nr_set == nclusters &&
      !(hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
  }
  return all ? persist_all_allocated (err) : 0;
}

/* Clusters [C0, C1) now hold their data in the image (written with
 * image_write_flags): set their bits, as the persistence mode says.
 */
static int
set_bits (uint64_t c0, uint64_t c1, int *err)
{
  if (mode == PERSIST_AT_WRITE)
    return persist_bits_now (c0, c1, err);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
  set_bits_in_memory (c0, c1, true);
  return 0;
}

/* ---- the flush sequence ---- */

struct chunk_copy {
  uint64_t index;
  uint8_t data[CHUNK];
};

/* Copy the dirty chunks of the bitmap and clear their flags.  Caller
 * holds bitmap_lock.  Returns the number of copies, or -1.
 */
static ssize_t
collect_dirty (struct chunk_copy **copies_ret, int *err)
{
  uint64_t nchunks = bmlen / CHUNK + (bmlen % CHUNK != 0), k;
  struct chunk_copy *copies = NULL;
  size_t n = 0, i;

  for (k = 0; k < nchunks; ++k)
    n += dirty[k];
  if (n) {
    copies = malloc (n * sizeof *copies);
    if (copies == NULL) {
      *err = errno;
      nbdkit_error ("malloc: %m");
      return -1;
    }
  }
  for (i = 0, k = 0; k < nchunks; ++k) {
    if (dirty[k]) {
      copies[i].index = k;
      memcpy (copies[i].data, bitmap + k * CHUNK,
              MIN ((uint64_t) CHUNK, bmlen - k * CHUNK));
      dirty[k] = 0;
      i++;
    }
  }
  *copies_ret = copies;
  return n;
}

/* Flush the plugin, unless it cannot flush (AT_CLOSE). */
static int
plugin_flush (nbdkit_next *next, int *err)
{
  if (mode == PERSIST_AT_CLOSE)
    return 0;
  if (next->flush (next, 0, err) == -1) {
    poison ("a flush of the plugin", *err);
    return -1;
  }
  return 0;
}

static int
do_flush (nbdkit_next *next, int *err)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&flush_lock);
  CLEANUP_FREE struct chunk_copy *copies = NULL;
  ssize_t nr_copies = 0, i;
  bool set_all = false;

  if (refuse_if_poisoned (err) == -1)
    return -1;
  if (bitmap) {
    /* Every bit set so far (AT_WRITE: none is dirty): the plugin flush
     * below covers its data.
     */
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    nr_copies = collect_dirty (&copies, err);
    if (nr_copies == -1)
      return -1;
    set_all = nr_set == nclusters && nclusters > 0 &&
      !(hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED);
  }

  /* 1. The plugin: the data behind every bit in the snapshot. */
  if (plugin_flush (next, err) == -1)
    goto redirty;

  /* 2. The bitmap, then the header. */
  for (i = 0; i < nr_copies; ++i) {
    uint64_t off = copies[i].index * CHUNK;
    if (full_pwrite (fd, copies[i].data, MIN ((uint64_t) CHUNK, bmlen - off),
                     hdr.header_size + off) == -1) {
      *err = errno;
      nbdkit_error ("%s: writing bitmap at offset %" PRIu64 ": %m",
                    sidecar, hdr.header_size + off);
      goto redirty;
    }
  }
  if (nr_copies && fdatasync (fd) == -1) {
    *err = errno;
    poison ("fdatasync of the sidecar", errno);
    goto redirty;
  }
  if (durable) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    for (i = 0; i < nr_copies; ++i) {
      uint64_t off = copies[i].index * CHUNK;
      memcpy (durable + off, copies[i].data,
              MIN ((uint64_t) CHUNK, bmlen - off));
    }
  }
  if (set_all && persist_all_allocated (err) == -1)
    return -1;
  return 0;

 redirty:
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
    for (i = 0; i < nr_copies; ++i)
      dirty[copies[i].index] = 1;
  }
  return -1;
}

static bool
have_dirty (void)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&bitmap_lock);
  uint64_t k;

  if (bitmap == NULL)
    return false;
  if (nr_set == nclusters && nclusters > 0 &&
      !(hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED))
    return true;
  for (k = 0; k <= bmlen / CHUNK; ++k)
    if (dirty[k])
      return true;
  return false;
}

/* A clean disconnect persists what this server set (as a flush). */
static int
addcow_finalize (nbdkit_next *next, void *handle)
{
  int err = 0;

  if (!is_poisoned () && have_dirty () && do_flush (next, &err) == -1)
    return -1;
  return 0;
}

/* Advertise the cluster size as the preferred block size, so that
 * well-behaved clients write whole clusters and avoid copy-up reads.
 */
static int
addcow_block_size (nbdkit_next *next, void *handle, uint32_t *minimum,
                   uint32_t *preferred, uint32_t *maximum)
{
  if (next->block_size (next, minimum, preferred, maximum) == -1)
    return -1;
  if (*minimum == 0) {          /* the plugin has no constraints */
    *minimum = 1;
    *preferred = 4096;
    *maximum = 0xffffffff;
  }
  if (csize > *preferred && csize <= *maximum)
    *preferred = csize;
  return 0;
}

/* ---- can_* : every one explicit (see DESIGN: nbdkit 1.32 facts) ---- */

static int
addcow_can_write (nbdkit_next *next, void *handle)
{
  return next->can_write (next);
}

/* A plugin that cannot flush cannot make anything durable: offer
 * neither flush nor FUA then (persist mode AT_CLOSE).
 */
static int
addcow_can_flush (nbdkit_next *next, void *handle)
{
  return next->can_flush (next);
}

static int
addcow_can_fua (nbdkit_next *next, void *handle)
{
  int r = next->can_flush (next);

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

/* ---- I/O helpers ---- */

/* Read from the backing file (zeroes past its end or without one). */
static int
backing_read (void *buf, uint64_t count, uint64_t offset, int *err)
{
  if (backing == NULL) {
    memset (buf, 0, count);
    return 0;
  }
  if (qad_blockdev_pread (backing, buf, count, offset) == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

/* Zero a range of the plugin, emulating when it cannot zero. */
static int
image_zero (nbdkit_next *next, uint64_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  int r = next->can_zero (next);

  if (r == -1) {
    *err = EIO;
    return -1;
  }
  if (r > NBDKIT_ZERO_NONE)
    return next->zero (next, count, offset, flags, err);
  {
    CLEANUP_FREE char *zeroes = calloc (1, MIN (count, (uint64_t) 1 << 20));
    if (zeroes == NULL) {
      *err = errno;
      return -1;
    }
    while (count > 0) {
      uint32_t n = MIN (count, (uint64_t) 1 << 20);
      if (next->pwrite (next, zeroes, n, offset, flags & NBDKIT_FLAG_FUA,
                        err) == -1)
        return -1;
      count -= n;
      offset += n;
    }
  }
  return 0;
}

/* Write BUF, or zeroes if BUF is NULL (ZFLAGS: MAY_TRIM, FAST_ZERO),
 * to the plugin.  With FUA the data is durable on success: the
 * plugin's FUA if it has one, else a flush after the write; a failed
 * FUA request poisons the filter (its durability is in doubt).
 */
static int
image_write (nbdkit_next *next, const void *buf, uint64_t count,
             uint64_t offset, uint32_t zflags, bool fua, int *err)
{
  int fua_mode = NBDKIT_FUA_NONE, r;
  uint32_t flags = 0;

  if (fua) {
    fua_mode = next->can_fua (next);
    if (fua_mode == -1) {
      *err = EIO;
      return -1;
    }
    if (fua_mode > NBDKIT_FUA_NONE)
      flags |= NBDKIT_FLAG_FUA;
  }
  if (buf)
    r = next->pwrite (next, buf, count, offset, flags, err);
  else
    r = image_zero (next, count, offset, flags | zflags, err);
  if (r == 0 && fua && fua_mode == NBDKIT_FUA_NONE)
    r = next->flush (next, 0, err);
  if (r == -1 && fua && *err != ENOSPC)
    poison ("a FUA write to the plugin", *err);
  return r;
}

/* Data whose bits are about to be set must be durable first when bits
 * are persisted at write (AT_WRITE).
 */
static inline bool
bits_need_durable_data (void)
{
  return mode == PERSIST_AT_WRITE;
}

/* Copy cluster C up into the image, with [DOFF, DOFF+DLEN) of the
 * cluster (disk offsets) replaced by DATA, or by zeroes if DATA is
 * NULL.  Caller holds the range lock and has seen bit 0.  Sets the
 * bit after the write.
 */
static int
copy_up (nbdkit_next *next, uint64_t c, const void *data,
         uint64_t doff, uint64_t dlen, int *err)
{
  uint64_t start = c * csize;
  uint64_t len = MIN (csize, disk_size - start);
  CLEANUP_FREE char *buf = malloc (len);

  if (buf == NULL) {
    *err = errno;
    nbdkit_error ("malloc: %m");
    return -1;
  }
  if (backing_read (buf, len, start, err) == -1)
    return -1;
  if (data)
    memcpy (buf + (doff - start), data, dlen);
  else
    memset (buf + (doff - start), 0, dlen);
  if (image_write (next, buf, len, start, 0, bits_need_durable_data (),
                   err) == -1)
    return -1;
  return set_bits (c, c + 1, err);
}

enum op { OP_WRITE, OP_ZERO };

/* The checked path for writes and zeroes that touch bit-0 clusters.
 * FLAGS never contains FUA here.
 */
static int
write_slow (nbdkit_next *next, enum op op, const char *buf,
            uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0 = offset >> cbits;
  uint64_t c1 = ((offset + count - 1) >> cbits) + 1;
  uint64_t end = offset + count;
  int ret = -1;

  if (rangelock_acquire (&clusters, c0, c1) == -1) {
    *err = errno;
    nbdkit_error ("rangelock: %m");
    return -1;
  }
  while (offset < end) {
    uint64_t c = offset >> cbits;
    bool v;
    uint64_t run = bit_run (c, c1, &v);
    uint64_t rend = MIN (end, (c + run) * csize);
    uint64_t n = rend - offset;

    if (v) {
      if (op == OP_WRITE) {
        if (next->pwrite (next, buf, n, offset, flags, err) == -1)
          goto out;
      }
      else if (image_zero (next, n, offset, flags, err) == -1)
        goto out;
    }
    else {
      /* Bit-0 run: partial head and tail clusters are copied up;
       * whole clusters in between are written directly.
       */
      uint64_t pos = offset;
      while (pos < rend) {
        uint64_t cc = pos >> cbits;
        uint64_t cstart = cc * csize;
        uint64_t cend = MIN (cstart + csize, disk_size);
        if (pos != cstart || rend < cend) {
          uint64_t l = MIN (rend, cend) - pos;
          if (copy_up (next, cc,
                       op == OP_WRITE ? buf + (pos - offset) : NULL,
                       pos, l, err) == -1)
            goto out;
          pos += l;
        }
        else {
          /* Whole clusters from cc up to the last one rend covers. */
          uint64_t wend = rend == disk_size ? rend
            : rend & ~(csize - 1);
          uint64_t l = wend - pos;
          if (image_write (next, op == OP_WRITE ? buf + (pos - offset) : NULL,
                           l, pos, flags, bits_need_durable_data (),
                           err) == -1)
            goto out;
          if (set_bits (cc, (wend + csize - 1) >> cbits, err) == -1)
            goto out;
          pos = wend;
        }
      }
    }
    if (op == OP_WRITE)
      buf += n;
    offset = rend;
  }
  ret = 0;
 out:
  rangelock_release (&clusters, c0, c1);
  return ret;
}

/* ---- NBD operations ---- */

static int
addcow_pread (nbdkit_next *next, void *handle, void *vbuf, uint32_t count,
              uint64_t offset, uint32_t flags, int *err)
{
  struct handle *h = handle;
  char *buf = vbuf;
  uint64_t end = offset + count;
  uint64_t c1 = ((end - 1) >> cbits) + 1;

  if (all_allocated ())
    return next->pread (next, buf, count, offset, flags, err);

  while (offset < end) {
    uint64_t c = offset >> cbits;
    bool v;
    uint64_t run = bit_run (c, c1, &v);
    uint64_t rend = MIN (end, (c + run) * csize);
    uint64_t n = rend - offset;

    if (v) {
      if (next->pread (next, buf, n, offset, 0, err) == -1)
        return -1;
    }
    else if (!on_read || !h->can_write) {
      if (backing_read (buf, n, offset, err) == -1)
        return -1;
    }
    else {
      /* Copy-on-read: under the range lock, copy each cluster still
       * at 0 into the image and set its bit.
       */
      uint64_t ca = c, cb = ((rend - 1) >> cbits) + 1, cc;
      int r = 0;
      if (rangelock_acquire (&clusters, ca, cb) == -1) {
        *err = errno;
        return -1;
      }
      for (cc = ca; cc < cb && r == 0; ++cc) {
        uint64_t cstart = cc * csize;
        uint64_t clen = MIN (csize, disk_size - cstart);
        uint64_t s = MAX (cstart, offset), e = MIN (cstart + clen, rend);
        bool bit;
        bit_run (cc, cc + 1, &bit);
        if (bit)
          r = next->pread (next, buf + (s - offset), e - s, s, 0, err);
        else {
          char *cbuf = malloc (clen);
          if (cbuf == NULL) {
            *err = errno;
            r = -1;
            break;
          }
          r = backing_read (cbuf, clen, cstart, err);
          if (r == 0)
            r = image_write (next, cbuf, clen, cstart, 0,
                             bits_need_durable_data (), err);
          if (r == 0)
            r = set_bits (cc, cc + 1, err);
          if (r == 0) {
            memcpy (buf + (s - offset), cbuf + (s - cstart), e - s);
          }
          free (cbuf);
        }
      }
      rangelock_release (&clusters, ca, cb);
      if (r == -1)
        return -1;
    }
    buf += n;
    offset = rend;
  }
  return 0;
}

static int
addcow_pwrite (nbdkit_next *next, void *handle, const void *buf,
               uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0 = offset >> cbits;
  uint64_t c1 = ((offset + count - 1) >> cbits) + 1;
  bool fua = flags & NBDKIT_FLAG_FUA;

  if (refuse_if_poisoned (err) == -1)
    return -1;
  if (range_all_set (c0, c1)) {
    /* FUA may go straight down only if the bits are durable too. */
    bool direct_fua = fua && range_all_durable (c0, c1);
    if (image_write (next, buf, count, offset, 0, direct_fua, err) == -1)
      return -1;
    if (direct_fua)
      return 0;
  }
  else if (write_slow (next, OP_WRITE, buf, count, offset, 0, err) == -1)
    return -1;
  return fua ? do_flush (next, err) : 0;
}

static int
addcow_zero (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t c0 = offset >> cbits;
  uint64_t c1 = ((offset + count - 1) >> cbits) + 1;
  bool fua = flags & NBDKIT_FLAG_FUA;
  uint32_t pflags = flags & NBDKIT_FLAG_MAY_TRIM;

  if (refuse_if_poisoned (err) == -1)
    return -1;
  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    /* Fast only if nothing needs copying up and the plugin is fast. */
    uint64_t head = offset & (csize - 1);
    uint64_t tail = (offset + count) & (csize - 1);
    if (next->can_fast_zero (next) != 1 ||
        (!range_all_set (c0, c1) &&
         ((head && !range_all_set (c0, c0 + 1)) ||
          (tail && offset + count != disk_size &&
           !range_all_set (c1 - 1, c1))))) {
      *err = ENOTSUP;
      return -1;
    }
    pflags |= NBDKIT_FLAG_FAST_ZERO;
  }

  if (range_all_set (c0, c1)) {
    bool direct_fua = fua && range_all_durable (c0, c1);
    if (image_write (next, NULL, count, offset, pflags, direct_fua,
                     err) == -1)
      return -1;
    if (direct_fua)
      return 0;
  }
  else if (write_slow (next, OP_ZERO, NULL, count, offset, pflags,
                       err) == -1)
    return -1;
  return fua ? do_flush (next, err) : 0;
}

static int
addcow_trim (nbdkit_next *next, void *handle, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  uint64_t end = offset + count;
  uint64_t c1 = ((end - 1) >> cbits) + 1;
  bool fua = flags & NBDKIT_FLAG_FUA;
  int r;

  if (refuse_if_poisoned (err) == -1)
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
    uint64_t c = offset >> cbits;
    bool v;
    uint64_t run = bit_run (c, c1, &v);
    uint64_t rend = MIN (end, (c + run) * csize);

    if (v && next->trim (next, rend - offset, offset, 0, err) == -1)
      return -1;
    offset = rend;
  }
  return fua ? do_flush (next, err) : 0;
}

static int
addcow_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  return do_flush (next, err);
}

/* Copy the plugin's extents for [OFFSET, OFFSET+COUNT) into EXTENTS.
 * Sets *SHORT when the plugin described less than asked (the caller
 * must then stop: extents have to be contiguous).
 */
static int
plugin_extents (nbdkit_next *next, uint64_t count, uint64_t offset,
                uint32_t flags, struct nbdkit_extents *extents,
                bool *short_, int *err)
{
  struct nbdkit_extents *e2;
  uint64_t end = offset + count, pos = offset;
  size_t i, n;
  int r = next->can_extents (next);

  if (r == -1) {
    *err = EIO;
    return -1;
  }
  if (r == 0)
    return nbdkit_add_extent (extents, offset, count, 0);

  e2 = nbdkit_extents_new (offset, end);
  if (e2 == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, count, offset, flags, e2, err) == -1) {
    nbdkit_extents_free (e2);
    return -1;
  }
  n = nbdkit_extents_count (e2);
  for (i = 0; i < n && pos < end; ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (e2, i);
    uint64_t eend = MIN (end, e.offset + e.length);
    if (e.offset > pos || eend <= pos)
      continue;
    if (nbdkit_add_extent (extents, pos, eend - pos, e.type) == -1) {
      *err = errno;
      nbdkit_extents_free (e2);
      return -1;
    }
    pos = eend;
  }
  nbdkit_extents_free (e2);
  *short_ = pos < end;
  return 0;
}

static int
backing_extents (uint64_t count, uint64_t offset,
                 struct nbdkit_extents *extents, int *err)
{
  uint64_t end = offset + count;

  if (backing == NULL)
    return nbdkit_add_extent (extents, offset, count,
                              NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO);
  while (offset < end) {
    uint64_t len;
    uint32_t fl;
    if (qad_blockdev_extent (backing, offset, end - offset, &len, &fl) == -1) {
      *err = errno ? errno : EIO;
      return -1;
    }
    if (len == 0 || len > end - offset)
      len = end - offset;
    if (nbdkit_add_extent (extents, offset, len, fl) == -1) {
      *err = errno;
      return -1;
    }
    offset += len;
  }
  return 0;
}

static int
addcow_extents (nbdkit_next *next, void *handle, uint32_t count,
                uint64_t offset, uint32_t flags,
                struct nbdkit_extents *extents, int *err)
{
  uint64_t end = offset + count;
  uint64_t c1 = ((end - 1) >> cbits) + 1;
  bool short_ = false;

  if (all_allocated ())
    return plugin_extents (next, count, offset, flags, extents, &short_, err);

  while (offset < end) {
    uint64_t c = offset >> cbits;
    bool v;
    uint64_t run = bit_run (c, c1, &v);
    uint64_t rend = MIN (end, (c + run) * csize);

    if (v) {
      if (plugin_extents (next, rend - offset, offset,
                          flags & ~NBDKIT_FLAG_REQ_ONE, extents, &short_,
                          err) == -1)
        return -1;
      if (short_)
        break;
    }
    else if (backing_extents (rend - offset, offset, extents, err) == -1)
      return -1;
    if (flags & NBDKIT_FLAG_REQ_ONE)
      break;
    offset = rend;
  }
  return 0;
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
  .open              = addcow_open,
  .close             = addcow_close,
  .prepare           = addcow_prepare,
  .finalize          = addcow_finalize,
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
