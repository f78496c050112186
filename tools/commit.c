/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img commit [-p] IMAGE, as qemu-img commit: what a QED image or
 * an add-cow file holds is written into its backing file (raw or QED,
 * commit-target.c), which is synced, and only then is the image
 * emptied (qed_make_empty, addcow_make_empty: the crash ordering is
 * theirs).
 *
 * Why a kill -9 at any moment loses nothing: until the backing file
 * is synced the image is untouched and still reads as before; after
 * it, every cluster the image holds reads the same from the image and
 * from the backing file, so any mix of emptied and not yet emptied
 * clusters reads the same.  Running commit again after a crash
 * finishes the job.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addcow-file.h"
#include "addcow-resize.h"
#include "cleanup.h"
#include "commit-target.h"
#include "full-io.h"
#include "lsb-bits.h"
#include "minmax.h"
#include "qad-img.h"
#include "qed-image.h"
#include "qed-resize.h"

#define CHUNK (1024 * 1024)

/* What a commit did, for --json. */
struct commit_report {
  const char *format;           /* of the image: "qed", "add-cow" */
  char *backing;                /* the backing name as recorded */
  char backing_format[ADDCOW_FORMAT_LEN + 1]; /* "raw" or "qed" */
  uint64_t size;                /* the disk's */
  uint64_t bytes;               /* written into the backing file */
};

static void
progress (uint64_t done, uint64_t total)
{
  maintenance_progress (NULL, done, total);
}

static int
commit_qed (const char *file, struct commit_report *rep)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct qed_open_options opts = { .lock = true, .no_backing = true };
  struct commit_target t = { .fd = -1 };
  CLEANUP_FREE char *name = NULL, *path = NULL, *buf = NULL;
  struct qed_image *img;
  uint64_t off = 0, size;
  int r = -1;

  if (tool_backing_rules (file, &rules) == -1)
    return -1;
  img = qed_open (file, &opts);
  if (img == NULL)
    return -1;
  size = img->header.image_size;
  if (qed_offline_writable (img, "commit") == -1 ||
      qed_read_backing_name (img, &name) == -1)
    goto out;
  if (name == NULL) {
    fprintf (stderr, "qad-img: %s: the image has no backing file: nothing "
             "to commit into\n", file);
    goto out;
  }
  rep->format = "qed";
  rep->size = size;
  rep->backing = strdup (name);
  if (rep->backing == NULL) {
    perror ("qad-img: strdup");
    goto out;
  }
  path = qed_resolve_backing_name (file, name);
  buf = malloc (CHUNK);
  if (path == NULL || buf == NULL ||
      commit_target_open (&t, file, name, path,
                          img->header.features & QED_F_BACKING_FORMAT_NO_PROBE
                          ? "raw" : NULL, &rules, img->fd) == -1 ||
      commit_target_grow (&t, size) == -1)
    goto out;
  strcpy (rep->backing_format, t.is_qed ? "qed" : "raw");

  progress (0, size);
  while (off < size) {
    struct qed_mapping m;

    if (qed_map (img, off, MIN (size - off, (uint64_t) CHUNK), &m) == -1)
      goto out;
    if (m.kind == QED_KIND_DATA &&
        (qed_pread (img, buf, m.length, off) == -1 ||
         commit_target_write (&t, buf, m.length, off) == -1))
      goto out;
    if (m.kind == QED_KIND_ZERO &&
        commit_target_zero (&t, m.length, off) == -1)
      goto out;
    if (m.kind != QED_KIND_UNALLOCATED)
      rep->bytes += m.length;
    off += m.length;
    progress (off, size);
  }
  /* The backing file holds everything durably before anything in the
   * image changes.
   */
  if (commit_target_sync (&t) == -1 || commit_target_close (&t) == -1 ||
      qed_make_empty (img) == -1)
    goto out;
  r = 0;

 out:
  if (commit_target_close (&t) == -1)
    r = -1;
  if (qed_close (img) == -1)
    r = -1;
  return r;
}

/* Copy clusters [C, END) of the add-cow pair into the target. */
static int
copy_clusters (struct addcow_pair *p, struct commit_target *t, uint64_t c,
               uint64_t end, char *buf, uint64_t *bytes)
{
  unsigned bits = p->h->cluster_bits;
  uint64_t off = c << bits;
  uint64_t stop = MIN (end << bits, p->disk_size);

  while (off < stop) {
    uint64_t n = MIN (stop - off, (uint64_t) CHUNK);
    if (full_pread (p->image_fd, buf, n, off) == -1) {
      fprintf (stderr, "qad-img: %s: read at offset %" PRIu64 ": %s\n",
               p->image, off, strerror (errno));
      return -1;
    }
    if (commit_target_write (t, buf, n, off) == -1)
      return -1;
    off += n;
    *bytes += n;
    progress (off, p->disk_size);
  }
  return 0;
}

static int
commit_addcow (const char *file, struct commit_report *rep)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct addcow_header h;
  struct addcow_pair p;
  struct commit_target t = { .fd = -1 };
  CLEANUP_FREE char *bk = NULL, *buf = NULL;
  uint64_t c, n;
  int r = -1;

  if (tool_backing_rules (file, &rules) == -1 ||
      addcow_pair_open (&p, &h, file) == -1)
    return -1;
  if (!h.backing_file) {
    fprintf (stderr, "qad-img: %s: the add-cow file has no backing file: "
             "nothing to commit into\n", file);
    goto out;
  }
  if (addcow_refuse_supplied (file, &h, "commit",
                              "cannot write into a backing it cannot "
                              "open") == -1)
    goto out;
  if (addcow_name_is_uri (h.backing_file)) {
    fprintf (stderr, "qad-img: %s: the backing file is an NBD URI (%s): "
             "qad-img commits only into raw or QED files\n", file,
             h.backing_file);
    goto out;
  }
  rep->format = "add-cow";
  strcpy (rep->backing_format, h.backing_format);
  rep->backing = strdup (h.backing_file);
  bk = addcow_resolve_name (file, h.backing_file);
  buf = malloc (CHUNK);
  if (rep->backing == NULL || bk == NULL || buf == NULL ||
      commit_target_open (&t, file, h.backing_file, bk, h.backing_format,
                          &rules, p.image_fd) == -1 ||
      commit_target_grow (&t, p.disk_size) == -1)
    goto out;

  rep->size = p.disk_size;
  n = addcow_nr_clusters (p.disk_size, h.cluster_bits);
  progress (0, p.disk_size);
  for (c = 0; c < n && !p.fresh; ) {
    bool held = true;
    uint64_t run = p.all_allocated ? n - c
      : bits_run (p.bitmap, c, n, &held);

    if (held && copy_clusters (&p, &t, c, c + run, buf, &rep->bytes) == -1)
      goto out;
    c += run;
  }
  progress (p.disk_size, p.disk_size);
  /* Durable in the backing file before any bit is cleared. */
  if (commit_target_sync (&t) == -1 || commit_target_close (&t) == -1 ||
      addcow_make_empty (&p) == -1)
    goto out;
  r = 0;

 out:
  if (commit_target_close (&t) == -1)
    r = -1;
  addcow_pair_close (&p);
  return r;
}

int
commit_verb (int argc, char **argv)
{
  const struct qad_format *fmt;
  struct commit_report rep = { .format = NULL };
  const char *file;
  bool json;
  int i, r;

  i = parse_maintenance_opts (argc, argv, &fmt, NULL, &json);
  if (i == -1)
    return EXIT_FAILURE;
  if (i != argc - 1) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img commit [-f FMT] [-p] [--output=json] IMAGE\n");
    return EXIT_FAILURE;
  }
  file = argv[i];
  if (json)
    qad_progress = false;       /* stdout carries only the document */
  if (!fmt)
    fmt = format_of_file (file);
  if (fmt == &qed_format)
    r = commit_qed (file, &rep);
  else if (fmt == &addcow_format)
    r = commit_addcow (file, &rep);
  else {
    if (fmt)
      fprintf (stderr, "qad-img: %s: commit needs a QED image or an "
               "add-cow file\n", file);
    return EXIT_FAILURE;
  }
  if (r == 0 && json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, file);
    printf (",\n  \"format\": \"%s\",\n  \"backing-filename\": ",
            rep.format);
    json_string (stdout, rep.backing);
    printf (",\n  \"backing-filename-format\": \"%s\",\n"
            "  \"virtual-size\": %" PRIu64 ",\n"
            "  \"bytes-committed\": %" PRIu64 "\n}\n",
            rep.backing_format, rep.size, rep.bytes);
  }
  else if (r == 0)
    printf ("Image committed.\n");
  free (rep.backing);
  return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
