/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img rebase and amend for add-cow sidecars: glue over
 * common/addcow/addcow-rebase.c, which holds the crash-safety
 * argument (write aside, rename).  Names are recorded as given and
 * resolved relative to the sidecar's directory, as qemu-img rebase
 * does for backing names; formats follow the creation policy
 * (addcow_choose_backing_format): never probed.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-file.h"
#include "addcow-rebase.h"
#include "cleanup.h"
#include "qad-img.h"
#include "qed-image.h"
#include "rebase.h"

/* An open sidecar and what the change needs of it. */
struct sidecar {
  const char *file;
  int fd;
  struct addcow_header h;       /* as read */
  uint64_t file_size;
  struct stat image_st;         /* of the image file (new or current) */
};

/* *NH = S->h with the change C: names as given, the backing format
 * chosen by the creation policy.  0 or -1; free NH either way.
 */
static int
change_header (struct sidecar *s, const struct backing_change *c,
               struct addcow_header *nh)
{
  const char *backing = c->backing ? c->backing : s->h.backing_file;
  const char *format = c->format;
  CLEANUP_FREE char *path = NULL;

  if (addcow_header_copy (nh, &s->h) == -1)
    return -1;
  if (c->image && addcow_header_set_image (nh, s->file, c->image) == -1)
    return -1;
  if (backing && backing[0] == '\0')
    backing = NULL;
  if (backing == NULL) {
    /* No backing: nothing is supplied any more. */
    nh->features &= ~ADDCOW_FEATURE_BACKING_SUPPLIED;
    return addcow_header_set_backing (nh, s->file, NULL, format);
  }
  /* BACKING_SUPPLIED: the new name is a label, recorded as given; the
   * plugin below the filter serves the disk, so the format is raw.
   */
  if (addcow_backing_supplied (&s->h)) {
    if (format && strcmp (format, "raw") != 0) {
      fprintf (stderr, "qad-img: %s: add-cow header: features has "
               "BACKING_SUPPLIED: the backing is the server's plugin, "
               "whose format is raw, not %s\n", s->file, format);
      return -1;
    }
    return addcow_header_set_backing (nh, s->file, backing, "raw");
  }
  /* amend keeps the recorded format unless told; rebase, like create,
   * lets the policy choose (raw, unless the file has a known header).
   */
  if (format == NULL && (strcmp (c->verb, "amend") == 0 || !c->backing) &&
      s->h.backing_file)
    format = s->h.backing_format;
  path = addcow_resolve_name (s->file, backing);
  if (path == NULL)
    return -1;
  format = addcow_choose_backing_format (path, format, "-F");
  if (format == NULL || addcow_refuse_temporary_uri (path) == -1)
    return -1;
  return addcow_header_set_backing (nh, s->file, backing, format);
}

/* The image must exist; its size is the disk's. */
static int
stat_image (struct sidecar *s, const char *name)
{
  CLEANUP_FREE char *path = addcow_resolve_name (s->file, name);

  if (path == NULL)
    return -1;
  if (stat (path, &s->image_st) == -1) {
    fprintf (stderr, "qad-img: %s: image file %s: %s\n", s->file, path,
             strerror (errno));
    return -1;
  }
  return 0;
}

/* Open the backing NAME (format FORMAT) of sidecar S for reading, with
 * neither the image nor the sidecar anywhere in its chain.  NAME NULL:
 * *DEV = NULL (reads zeroes).
 */
static int
open_backing (struct sidecar *s, const char *name, const char *format,
              const struct qad_backing_rules *rules,
              struct qad_blockdev **dev)
{
  CLEANUP_FREE char *path = NULL;
  struct qed_file_id ids[2];
  struct stat st;

  *dev = NULL;
  if (name == NULL)
    return 0;
  if (addcow_name_is_uri (name)) {
    fprintf (stderr, "qad-img: rebase: %s: a safe rebase reads the backing "
             "files, and qad-img does not read NBD backings (%s): use -u\n",
             s->file, name);
    return -1;
  }
  path = addcow_resolve_name (s->file, name);
  if (path == NULL || fstat (s->fd, &st) == -1)
    return -1;
  ids[0] = (struct qed_file_id) { s->image_st.st_dev, s->image_st.st_ino,
                                  "the image" };
  ids[1] = (struct qed_file_id) { st.st_dev, st.st_ino, "the sidecar" };
  *dev = qed_open_backing_checked (s->file, name, path, format, false, rules,
                                   ids, 2);
  return *dev ? 0 : -1;
}

/* The safe half: copy what the old backing gave where the new one
 * differs, and return the bitmap to write with the new header.
 */
static int
copy_for_rebase (struct sidecar *s, struct addcow_header *nh,
                 const struct qad_backing_rules *rules, uint8_t **bm,
                 uint64_t *bmlen)
{
  struct qad_blockdev *old = NULL, *new = NULL;
  CLEANUP_FREE char *image = addcow_resolve_name (s->file, nh->image_file);
  uint64_t disk = s->image_st.st_size, copied;
  bool fresh;
  int ifd = -1, r = -1;

  if (image == NULL ||
      addcow_load_bitmap (s->fd, s->file, &s->h, s->file_size, disk, bm,
                          bmlen, &fresh) == -1 ||
      open_backing (s, s->h.backing_file, s->h.backing_format, rules,
                    &old) == -1 ||
      open_backing (s, nh->backing_file, nh->backing_format, rules,
                    &new) == -1)
    goto out;
  ifd = open (image, O_RDWR | O_CLOEXEC);
  if (ifd == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", image, strerror (errno));
    goto out;
  }
  r = addcow_rebase_copy (ifd, image, disk, s->h.cluster_bits, *bm, old, new,
                          qad_progress ? print_progress : NULL, NULL,
                          &copied);
  if (r == 0)
    addcow_header_note_bitmap (nh, *bm, disk);
 out:
  if (ifd >= 0)
    close (ifd);
  qad_blockdev_close (old);
  qad_blockdev_close (new);
  return r;
}

int
addcow_apply_change (const struct backing_change *c)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct sidecar s = { .file = c->file };
  struct addcow_header nh = { .image_file = NULL };
  CLEANUP_FREE uint8_t *bm = NULL;
  uint64_t bmlen = 0, fresh_bmlen;
  uint8_t *fresh_bm = NULL;
  bool fresh, supplied;
  int r = -1, new_fd = -1;

  if (tool_backing_rules (c->file, &rules) == -1)
    return EXIT_FAILURE;
  s.fd = open (c->file, O_RDWR | O_CLOEXEC);
  if (s.fd == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", c->file, strerror (errno));
    return EXIT_FAILURE;
  }
  if (addcow_lock_fd (s.fd, c->file) == -1 ||
      addcow_read_header (s.fd, c->file, &s.h, &s.file_size) == -1) {
    close (s.fd);
    return EXIT_FAILURE;
  }
  if (change_header (&s, c, &nh) == -1 ||
      stat_image (&s, nh.image_file) == -1)
    goto out;
  supplied = addcow_backing_supplied (&nh);
  if (nh.backing_file && !supplied &&
      qad_backing_check_name (&rules, c->file, nh.backing_file,
                              addcow_name_is_uri (nh.backing_file)) == -1)
    goto out;
  /* A new image must be one the bitmap describes. */
  if (c->image) {
    if (addcow_load_bitmap (s.fd, c->file, &s.h, s.file_size,
                            s.image_st.st_size, &fresh_bm, &fresh_bmlen,
                            &fresh) == -1)
      goto out;
    free (fresh_bm);
  }
  /* With ALL_ALLOCATED the backing is never read: nothing to copy. */
  if (c->safe && !(s.h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)) {
    if (addcow_refuse_supplied (c->file, &s.h, "a safe rebase",
                                "cannot read it (rebase -u changes the "
                                "label only)") == -1 ||
        copy_for_rebase (&s, &nh, &rules, &bm, &bmlen) == -1)
      goto out;
  }
  else if (nh.backing_file && !supplied &&
           !addcow_name_is_uri (nh.backing_file)) {
    /* Unsafe: the new backing need not exist, but must not loop. */
    struct qad_blockdev *b = NULL;
    CLEANUP_FREE char *path = addcow_resolve_name (c->file,
                                                   nh.backing_file);
    if (path && access (path, F_OK) == -1 && errno == ENOENT) {
      if (missing_backing_allowed (c->file, path) == -1)
        goto out;
    }
    else if (open_backing (&s, nh.backing_file, nh.backing_format, &rules,
                           &b) == -1)
      goto out;
    qad_blockdev_close (b);
  }
  r = addcow_replace_file (s.fd, c->file, &nh, bm, bmlen, &new_fd);
  if (new_fd >= 0)
    close (new_fd);

 out:
  addcow_header_free (&nh);
  addcow_header_free (&s.h);
  close (s.fd);
  return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
