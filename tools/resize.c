/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img resize [--shrink] [-p] [--output=json] IMAGE [+|-]SIZE, as
 * qemu-img resize (plus progress and a JSON report it lacks): a QED
 * image (qed_resize), an add-cow file with its raw image
 * (addcow_resize) or every bitmap of a QDB file (qdb_resize, written
 * to a new file renamed into place).  The format facts and the crash
 * ordering are in common/; this file parses, locks and reports.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow-file.h"
#include "addcow-resize.h"
#include "cleanup.h"
#include "qad-img.h"
#include "qdb-resize.h"
#include "qed-image.h"
#include "qed-resize.h"

/* A size argument: SIZE, +SIZE or -SIZE. */
struct size_arg {
  int sign;                     /* 0 absolute, +1, -1 */
  unsigned long long value;
};

static bool
looks_like_size (const char *s)
{
  return (s[0] == '+' || s[0] == '-') && isdigit ((unsigned char) s[1]);
}

static int
parse_size_arg (const char *str, struct size_arg *a)
{
  a->sign = str[0] == '+' ? 1 : str[0] == '-' ? -1 : 0;
  return parse_size ("SIZE", a->sign ? str + 1 : str, &a->value);
}

/* The new size from the current one, or -1 after a message. */
static int
new_size_of (const char *file, const struct size_arg *a, uint64_t cur,
             uint64_t *ret)
{
  if (a->sign > 0 && a->value > UINT64_MAX - cur) {
    fprintf (stderr, "qad-img: %s: %" PRIu64 " + %llu bytes overflows\n",
             file, cur, a->value);
    return -1;
  }
  if (a->sign < 0 && a->value >= cur) {
    fprintf (stderr, "qad-img: %s: cannot shrink by %llu bytes: the image "
             "is only %" PRIu64 " bytes\n", file, a->value, cur);
    return -1;
  }
  *ret = a->sign > 0 ? cur + a->value : a->sign < 0 ? cur - a->value
    : a->value;
  return 0;
}

/* Each resize_FORMAT sets *OLD and *NEW, the disk sizes before and
 * after, for the report.
 */
static int
resize_qed (const char *file, const struct size_arg *a, bool shrink,
            uint64_t *old, uint64_t *size)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct qed_open_options opts = { .lock = true };
  struct qed_image *img;
  int r;

  if (tool_backing_rules (file, &rules) == -1)
    return -1;
  opts.backing_rules = &rules;
  img = qed_open (file, &opts);
  if (img == NULL)
    return -1;
  *old = img->header.image_size;
  r = new_size_of (file, a, *old, size);
  if (r == 0)
    r = qed_resize_progress (img, *size, shrink, maintenance_progress, NULL);
  if (qed_close (img) == -1)
    r = -1;
  return r;
}

/* The size of the add-cow file's backing file for addcow_resize: 0
 * without one (or under ALL_ALLOCATED), UINT64_MAX when it cannot be
 * known (an NBD URI, a file that cannot be opened, a backing supplied
 * by the server's plugin).
 */
static uint64_t
addcow_backing_size (const char *file, const struct addcow_header *h)
{
  CLEANUP_FREE char *bk = NULL;
  struct qad_blockdev *dev;
  uint64_t size;

  if (!h->backing_file || h->compat_features & ADDCOW_COMPAT_ALL_ALLOCATED)
    return 0;
  /* A supplied backing's label is never opened: its size is unknown. */
  if (addcow_backing_supplied (h))
    return UINT64_MAX;
  bk = addcow_resolve_name (file, h->backing_file);
  if (bk == NULL || addcow_name_is_uri (bk))
    return UINT64_MAX;
  dev = qed_open_backing (bk, h->backing_format, false);
  if (dev == NULL)
    return UINT64_MAX;
  size = dev->size;
  qad_blockdev_close (dev);
  return size;
}

static int
resize_addcow (const char *file, const struct size_arg *a, bool shrink,
               uint64_t *old, uint64_t *new_size)
{
  struct addcow_header h;
  struct addcow_pair p;
  uint64_t size = 0;
  int r = -1;

  if (addcow_pair_open (&p, &h, file) == -1)
    return -1;
  *old = p.disk_size;
  if (new_size_of (file, a, p.disk_size, &size) == 0 &&
      (size <= p.disk_size || p.all_allocated ||
       addcow_refuse_supplied (file, &h, "resize",
                               "cannot grow the disk: the backing's size "
                               "is unknown, and a larger backing would "
                               "show through the new area") == 0))
    r = addcow_resize (&p, size, shrink, size > p.disk_size
                       ? addcow_backing_size (file, &h) : 0);
  *new_size = size;
  addcow_pair_close (&p);
  return r;
}

static int
resize_qdb (const char *file, const struct size_arg *a, bool shrink,
            uint64_t *old, uint64_t *size)
{
  struct qdb_file *qdb;
  struct stat st;
  int fd, r = -1;

  qdb = tool_open_qdb (file, true, &fd);
  if (qdb == NULL)
    return -1;
  if (qdb->nr_bitmaps == 0) {
    fprintf (stderr, "qad-img: %s: the file has no bitmaps: nothing to "
             "resize\n", file);
    goto out;
  }
  *old = qdb->bitmaps[0].disk_size;
  if (new_size_of (file, a, *old, size) == 0 &&
      qdb_resize (qdb, *size, shrink) == 0 &&
      fstat (fd, &st) == 0)
    r = tool_replace_qdb (file, qdb, st.st_mode & 07777);

 out:
  qdb_free (qdb);
  close (fd);                   /* releases the lock */
  return r;
}

int
resize_verb (int argc, char **argv)
{
  const struct qad_format *fmt;
  const char *file, *size_str = NULL;
  struct size_arg a;
  bool shrink = false, json;
  uint64_t old = 0, size = 0;
  int i, r;

  /* "-1G" is a size, not an option (qemu-img takes the last argument
   * so; ours may be followed by the --json the dispatcher appends).
   */
  for (i = argc - 1; i > 1 && !size_str; --i)
    if (looks_like_size (argv[i]) && strcmp (argv[i - 1], "-f") != 0 &&
        strcmp (argv[i - 1], "--format") != 0) {
      size_str = argv[i];
      memmove (&argv[i], &argv[i + 1], (argc - i) * sizeof argv[0]);
      argc--;
    }
  i = parse_maintenance_opts (argc, argv, &fmt, &shrink, &json);
  if (i == -1)
    return EXIT_FAILURE;
  if (argc - i != (size_str ? 1 : 2)) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img resize [--shrink] [-f FMT] [-p] [--output=json] "
             "IMAGE [+|-]SIZE\n");
    return EXIT_FAILURE;
  }
  file = argv[i];
  if (!size_str)
    size_str = argv[i + 1];
  if (parse_size_arg (size_str, &a) == -1)
    return EXIT_FAILURE;
  if (!fmt && !(fmt = format_of_file (file)))
    return EXIT_FAILURE;
  if (json)
    qad_progress = false;       /* stdout carries only the document */

  maintenance_progress (NULL, 0, 1);
  if (fmt == &qed_format)
    r = resize_qed (file, &a, shrink, &old, &size);
  else if (fmt == &addcow_format)
    r = resize_addcow (file, &a, shrink, &old, &size);
  else
    r = resize_qdb (file, &a, shrink, &old, &size);
  if (r == -1)
    return EXIT_FAILURE;
  maintenance_progress_end ();
  if (json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, file);
    printf (",\n  \"format\": \"%s\",\n"
            "  \"old-virtual-size\": %" PRIu64 ",\n"
            "  \"virtual-size\": %" PRIu64 "\n}\n", fmt->name, old, size);
  }
  else
    printf ("Image resized.\n");
  return EXIT_SUCCESS;
}
