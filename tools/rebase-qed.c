/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img rebase and amend for QED images: glue over
 * common/qed/qed-rebase.c, which holds the crash-safety argument.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "qad-img.h"
#include "qed-image.h"
#include "qed-rebase.h"
#include "rebase.h"

/* Open the new backing NAME of the image IMG (named FILE) as the image
 * will, refusing the image itself anywhere in its chain.  *DEV is NULL
 * when an unsafe change names a file that does not exist (a warning).
 */
static int
open_new_backing (struct qed_image *img, const struct backing_change *c,
                  const char *name, const char *format,
                  const struct qad_backing_rules *rules,
                  struct qad_blockdev **dev)
{
  CLEANUP_FREE char *path = qed_resolve_backing_name (c->file, name);
  struct qed_file_id self;
  struct stat st;

  *dev = NULL;
  if (path == NULL)
    return -1;
  if (!c->safe && access (path, F_OK) == -1 && errno == ENOENT)
    return missing_backing_allowed (c->file, path);
  if (fstat (img->fd, &st) == -1) {
    fprintf (stderr, "qad-img: %s: fstat: %s\n", c->file, strerror (errno));
    return -1;
  }
  self = (struct qed_file_id) { st.st_dev, st.st_ino, "the image" };
  *dev = qed_open_backing_checked (c->file, name, path, format, true, rules,
                                   &self, 1);
  return *dev ? 0 : -1;
}

int
qed_apply_change (const struct backing_change *c)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct qed_open_options opts = {
    .lock = true, .no_backing = !c->safe, .backing_rules = &rules,
  };
  CLEANUP_FREE char *current = NULL;
  const char *name = c->backing, *format = c->format;
  struct qad_blockdev *new_backing = NULL;
  struct qed_image *img;
  uint64_t copied = 0, features;
  int r = -1;

  if (tool_backing_rules (c->file, &rules) == -1)
    return EXIT_FAILURE;
  img = qed_open (c->file, &opts);
  if (img == NULL) {
    if (c->safe)
      fprintf (stderr, "qad-img: rebase: %s: the current backing chain "
               "must open for a safe rebase (-u only rewrites the "
               "name)\n", c->file);
    return EXIT_FAILURE;
  }
  if (qed_read_backing_name (img, &current) == -1)
    goto out;
  /* amend: what is not given stays as recorded. */
  if (name == NULL) {
    if (current == NULL) {
      fprintf (stderr, "qad-img: amend: %s: backing_fmt=%s: the image has "
               "no backing file\n", c->file, format);
      goto out;
    }
    name = current;
  }
  if (format == NULL && c->backing && c->backing[0] && current &&
      strcmp (c->verb, "amend") == 0)
    format = qed_recorded_backing_format (&img->header);

  if (name[0] &&
      (qed_backing_format_features (c->file, format, &features) == -1 ||
       open_new_backing (img, c, name, format, &rules, &new_backing) == -1))
    goto out;
  if (c->safe &&
      qed_rebase_copy (img, new_backing,
                       qad_progress ? print_progress : NULL, NULL,
                       &copied) == -1)
    goto out;
  r = qed_header_set_backing (img, name, format);

 out:
  qad_blockdev_close (new_backing);
  if (qed_close (img) == -1)
    r = -1;
  return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
