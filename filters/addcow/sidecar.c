/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The add-cow filter's sidecar: see sidecar.h.  Every file named here
 * is compared by device and inode, never by name alone: the image, the
 * sidecar and every file of the backing chain must be distinct files.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "addcow.h"
#include "addcow-file.h"
#include "cleanup.h"
#include "nbd-backing.h"
#include "qed-image.h"
#include "sidecar.h"

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
create_sidecar (const struct sidecar_params *p)
{
  struct addcow_header h;
  CLEANUP_FREE char *image_name = NULL;
  CLEANUP_FREE char *backing_name = NULL;
  const char *bfmt = NULL;
  int r;

  if (p->image)
    image_name = strdup (p->image);
  else if (p->plugin_file)
    image_name = addcow_relative_name (p->sidecar, p->plugin_file);
  else {
    nbdkit_error ("%s: creating a new add-cow file needs the image's name: "
                  "use addcow-image=NAME (the plugin has no file= "
                  "parameter to take it from)", p->sidecar);
    return -1;
  }
  if (image_name == NULL)
    return -1;

  if (p->backing_supplied) {
    /* A label, recorded as given, never resolved or opened. */
    backing_name = strdup (p->backing);
    if (backing_name == NULL)
      return -1;
    bfmt = "raw";
  }
  else if (p->backing) {
    if (p->plugin_file && !addcow_name_is_uri (p->backing) &&
        same_file (p->backing, p->plugin_file)) {
      nbdkit_error ("%s: addcow-backing=%s is the image the plugin serves "
                    "(%s): an image cannot be its own backing file",
                    p->sidecar, p->backing, p->plugin_file);
      return -1;
    }
    backing_name = addcow_relative_name (p->sidecar, p->backing);
    if (backing_name == NULL)
      return -1;
  }
  if (!p->backing_supplied &&
      addcow_creation_backing (p->backing, p->backing_format,
                               "addcow-backing", "addcow-backing-format",
                               &bfmt) == -1)
    return -1;

  if (addcow_header_init (&h, p->cluster_bits ? p->cluster_bits
                          : ADDCOW_DEFAULT_CLUSTER_BITS,
                          image_name, "raw", backing_name, bfmt) == -1)
    return -1;
  if (p->backing_supplied)
    h.features |= ADDCOW_FEATURE_BACKING_SUPPLIED;
  r = addcow_create_file (p->sidecar, &h, false, 0);
  addcow_header_free (&h);
  if (r == 0)
    nbdkit_debug ("addcow: created %s", p->sidecar);
  return r;
}

/* Parameters must agree with what the sidecar records. */
static int
check_params_against_header (const struct sidecar_params *p,
                             const struct sidecar *sc)
{
  CLEANUP_FREE char *image = NULL;
  CLEANUP_FREE char *bk = NULL;

  if (p->cluster_bits && p->cluster_bits != sc->hdr.cluster_bits) {
    nbdkit_error ("%s: addcow-cluster-size=%" PRIu64 " contradicts the "
                  "cluster size %" PRIu64 " recorded in the file",
                  p->sidecar, UINT64_C (1) << p->cluster_bits,
                  UINT64_C (1) << sc->hdr.cluster_bits);
    return -1;
  }
  if (p->image && strcmp (p->image, sc->hdr.image_file) != 0) {
    nbdkit_error ("%s: addcow-image=%s contradicts the image name \"%s\" "
                  "recorded in the file", p->sidecar, p->image,
                  sc->hdr.image_file);
    return -1;
  }
  image = addcow_resolve_name (p->sidecar, sc->hdr.image_file);
  if (image == NULL)
    return -1;
  if (p->plugin_file && access (image, F_OK) == 0 &&
      !same_file (image, p->plugin_file)) {
    nbdkit_error ("%s: records the image %s, but the plugin serves %s",
                  p->sidecar, image, p->plugin_file);
    return -1;
  }
  if (same_file (image, p->sidecar) ||
      (p->plugin_file && same_file (p->plugin_file, p->sidecar))) {
    nbdkit_error ("%s: the sidecar is the image file itself", p->sidecar);
    return -1;
  }

  if (addcow_backing_supplied (&sc->hdr) != p->backing_supplied) {
    nbdkit_error ("%s: %s", p->sidecar, p->backing_supplied
                  ? "was made for a backing file the filter opens, not for "
                    "addcow-local-image= (the plugin below as the backing)"
                  : "was made with addcow-local-image= (its backing is the "
                    "plugin below the filter): give addcow-local-image=");
    return -1;
  }
  if (p->backing_supplied) {
    /* Once ALL_ALLOCATED, the backing is no longer read. */
    if (!(sc->hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) &&
        strcmp (p->backing, sc->hdr.backing_file) != 0) {
      nbdkit_error ("%s: was made over the backing \"%s\", but the plugin "
                    "below now serves \"%s\" (if that is the same image, "
                    "say so with addcow-backing-label=)", p->sidecar,
                    sc->hdr.backing_file, p->backing);
      return -1;
    }
    return 0;
  }
  if (sc->hdr.backing_file == NULL) {
    if (p->backing) {
      nbdkit_error ("%s: addcow-backing=%s given, but the file records "
                    "no backing file", p->sidecar, p->backing);
      return -1;
    }
    return 0;
  }
  bk = addcow_resolve_name (p->sidecar, sc->hdr.backing_file);
  if (bk == NULL)
    return -1;
  if (p->backing) {
    bool same = addcow_name_is_uri (bk) || addcow_name_is_uri (p->backing)
      ? strcmp (bk, p->backing) == 0 : same_file (bk, p->backing);
    if (!same) {
      nbdkit_error ("%s: addcow-backing=%s contradicts the backing file "
                    "%s recorded in the file", p->sidecar, p->backing, bk);
      return -1;
    }
  }
  if (p->backing_format &&
      strcmp (p->backing_format, sc->hdr.backing_format) != 0) {
    nbdkit_error ("%s: addcow-backing-format=%s contradicts the backing "
                  "format %s recorded in the file", p->sidecar,
                  p->backing_format, sc->hdr.backing_format);
    return -1;
  }
  return 0;
}

/* The files a backing chain must not contain: the sidecar and the
 * image (by device and inode: another name, a symbolic link or a hard
 * link is the same file).  Returns how many it filled in.
 */
static size_t
files_outside_chain (const struct sidecar_params *p,
                     const struct sidecar *sc, struct qed_file_id ids[2])
{
  CLEANUP_FREE char *image = NULL;
  struct stat st;
  size_t n = 0;

  if (fstat (sc->fd, &st) == 0)
    ids[n++] = (struct qed_file_id) { st.st_dev, st.st_ino, "the sidecar" };
  image = p->plugin_file ? strdup (p->plugin_file)
    : addcow_resolve_name (p->sidecar, sc->hdr.image_file);
  if (image && stat (image, &st) == 0)
    ids[n++] = (struct qed_file_id) { st.st_dev, st.st_ino, "the image" };
  return n;
}

/* The backing file, under addcow-backing-policy= (common/utils
 * backing-policy.c): a URI is refused before any connection, a file
 * is checked on the descriptor opened, and so is every file of a QED
 * backing's own chain.
 */
static int
open_backing (const struct sidecar_params *p, struct sidecar *sc)
{
  CLEANUP_FREE char *bk = NULL;
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct qed_file_id excluded[2];
  size_t nr_excluded;

  if (sc->hdr.backing_file == NULL)
    return 0;
  bk = addcow_resolve_name (p->sidecar, sc->hdr.backing_file);
  if (bk == NULL)
    return -1;
  if (qad_backing_rules_init (&rules, p->backing_policy, p->backing_dir,
                              p->sidecar) == -1)
    return -1;
  rules.param = "addcow-backing-policy";
  if (qad_backing_check_name (&rules, p->sidecar, sc->hdr.backing_file,
                              addcow_name_is_uri (bk)) == -1)
    return -1;
  if (addcow_name_is_uri (bk)) {
    if (strcmp (sc->hdr.backing_format, "raw") != 0) {
      nbdkit_error ("%s: backing format %s over NBD is not supported "
                    "(only raw)", p->sidecar, sc->hdr.backing_format);
      return -1;
    }
    sc->backing = nbd_backing_open (bk);
  }
  else if (strcmp (sc->hdr.backing_format, "raw") == 0 ||
           strcmp (sc->hdr.backing_format, "qed") == 0) {
    /* Read-only, with its own backing chain, read-locked as QEMU does. */
    nr_excluded = files_outside_chain (p, sc, excluded);
    sc->backing = qed_open_backing_checked (p->sidecar, sc->hdr.backing_file,
                                            bk, sc->hdr.backing_format, true,
                                            &rules, excluded, nr_excluded);
  }
  else {
    nbdkit_error ("%s: backing file format \"%s\" is not supported "
                  "(raw or qed)", p->sidecar, sc->hdr.backing_format);
    return -1;
  }
  if (sc->backing == NULL && errno == EPERM)
    return -1;                  /* the policy's refusal said it all */
  if (sc->backing == NULL) {
    nbdkit_error ("%s: cannot open the backing file %s (%s) recorded in it",
                  p->sidecar, bk, sc->hdr.backing_format);
    return -1;
  }
  nbdkit_debug ("addcow: backing %s (%s), %" PRIu64 " bytes",
                bk, sc->hdr.backing_format, sc->backing->size);
  return 0;
}

int
sidecar_open (const struct sidecar_params *p, struct sidecar *sc)
{
  sc->fd = open (p->sidecar, O_RDWR | O_CLOEXEC);
  if (sc->fd == -1 && errno == ENOENT) {
    if (create_sidecar (p) == -1)
      return -1;
    sc->fd = open (p->sidecar, O_RDWR | O_CLOEXEC);
  }
  if (sc->fd == -1) {
    nbdkit_error ("%s: %m", p->sidecar);
    return -1;
  }
  if (addcow_lock_fd (sc->fd, p->sidecar) == -1 ||
      addcow_read_header (sc->fd, p->sidecar, &sc->hdr,
                          &sc->file_size) == -1 ||
      check_params_against_header (p, sc) == -1)
    return -1;
  if (sc->hdr.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED) {
    nbdkit_debug ("addcow: %s is ALL_ALLOCATED: serving the image alone",
                  p->sidecar);
    return 0;
  }
  if (p->backing_supplied)
    return 0;                   /* the filter is handed the backing */
  return open_backing (p, sc);
}

int
sidecar_load_bitmap (struct sidecar *sc, const char *name,
                     uint64_t disk_size, uint8_t **bitmap, uint64_t *bmlen)
{
  struct stat st;
  bool fresh;

  if (fstat (sc->fd, &st) == -1) {
    nbdkit_error ("%s: fstat: %m", name);
    return -1;
  }
  if (addcow_load_bitmap (sc->fd, name, &sc->hdr, st.st_size, disk_size,
                          bitmap, bmlen, &fresh) == -1)
    return -1;
  if (fresh &&
      (ftruncate (sc->fd, sc->hdr.header_size + *bmlen) == -1 ||
       fdatasync (sc->fd) == -1)) {
    nbdkit_error ("%s: sizing the bitmap to %" PRIu64 " bytes: %m",
                  name, *bmlen);
    free (*bitmap);
    *bitmap = NULL;
    return -1;
  }
  if (fresh)
    nbdkit_debug ("addcow: %s: new bitmap of %" PRIu64 " bytes",
                  name, *bmlen);
  return 0;
}

void
sidecar_close (struct sidecar *sc)
{
  if (sc->fd >= 0)
    close (sc->fd);
  sc->fd = -1;
  qad_blockdev_close (sc->backing);
  sc->backing = NULL;
  addcow_header_free (&sc->hdr);
}
