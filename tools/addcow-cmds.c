/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img verbs for add-cow sidecars.  All format knowledge is in
 * common/addcow; this file parses options and prints.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addcow.h"
#include "addcow-check.h"
#include "addcow-file.h"
#include "cleanup.h"
#include "minmax.h"
#include "qad-error.h"
#include "qad-img.h"
#include "qed-image.h"

enum { OPT_CLUSTER_SIZE = 256,
       OPT_BACKING, OPT_BACKING_FORMAT, OPT_IMAGE, OPT_SIZE };

/* Open FILE, read its header; *DISK_SIZE from the image (0 if it is
 * missing, with *IMAGE_OK false).
 */
static int
open_sidecar (const char *file, int *fd, struct addcow_header *h,
              uint64_t *fsz, uint64_t *disk_size, bool *image_ok)
{
  CLEANUP_FREE char *image = NULL;
  struct stat st;

  *fd = open (file, O_RDONLY | O_CLOEXEC);
  if (*fd == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
    return -1;
  }
  if (addcow_read_header (*fd, file, h, fsz) == -1) {
    close (*fd);
    return -1;
  }
  image = addcow_resolve_name (file, h->image_file);
  *image_ok = image && stat (image, &st) == 0;
  *disk_size = *image_ok ? (uint64_t) st.st_size : 0;
  return 0;
}

/* Without opening it: does the backing BK of sidecar FILE lead outside
 * the directories backing-policy=inside allows, and would the policy
 * refuse it?  Sets *OUTSIDE and returns the policy that refuses it, or
 * NULL.
 */
static const char *
backing_refused_by (const char *file, const char *bk, bool *outside)
{
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  bool uri = addcow_name_is_uri (bk);

  *outside = uri;
  if (tool_backing_rules (file, &rules) == 0 && !uri)
    *outside = qad_backing_leaves (&rules, file, bk);
  if (tool_backing_policy == QAD_BACKING_REFUSE ||
      (tool_backing_policy == QAD_BACKING_INSIDE && *outside))
    return qad_backing_policy_name (tool_backing_policy);
  return NULL;
}

int
addcow_refuse_supplied (const char *file, const struct addcow_header *h,
                        const char *verb, const char *why)
{
  if (!addcow_backing_supplied (h))
    return 0;
  fprintf (stderr, "qad-img: %s: add-cow header: features has "
           "BACKING_SUPPLIED (0x%" PRIx64 "): the backing \"%s\" is "
           "supplied by the server's plugin and is only a label here; "
           "%s %s\n", file, ADDCOW_FEATURE_BACKING_SUPPLIED,
           h->backing_file, verb, why);
  return -1;
}

static int
addcow_info (int argc, char **argv)
{
  bool json, image_ok, all, fresh = false, backing_ok, supplied;
  struct addcow_header h;
  uint64_t fsz, disk_size, in_image = 0, nclusters, bmlen = 0;
  CLEANUP_FREE uint8_t *bm = NULL;
  CLEANUP_FREE char *image = NULL, *bk = NULL;
  const char *file, *refused = NULL;
  bool outside = false;
  char note[128] = "";
  int fd;

  file = parse_file_args (argc, argv, "add-cow", NULL, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  if (open_sidecar (file, &fd, &h, &fsz, &disk_size, &image_ok) == -1)
    return EXIT_FAILURE;
  all = h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;
  nclusters = addcow_nr_clusters (disk_size, h.cluster_bits);
  if (image_ok && !all) {
    if (addcow_load_bitmap (fd, file, &h, fsz, disk_size, &bm, &bmlen,
                            &fresh) == -1) {
      close (fd);
      addcow_header_free (&h);
      return EXIT_FAILURE;
    }
    in_image = bits_count (bm, 0, nclusters);
  }
  else if (all)
    in_image = nclusters;
  close (fd);
  image = addcow_resolve_name (file, h.image_file);
  supplied = addcow_backing_supplied (&h);
  /* A supplied backing's label is never resolved nor looked for. */
  if (h.backing_file && !supplied)
    bk = addcow_resolve_name (file, h.backing_file);
  /* As qemu-img info: the header is shown whether or not the backing
   * file can be opened; say when it is missing.
   */
  backing_ok = !bk || addcow_name_is_uri (bk) || access (bk, F_OK) == 0;
  if (supplied)
    snprintf (note, sizeof note, " [supplied by the server's plugin: "
              "a label, never opened]");
  else if (bk) {
    refused = backing_refused_by (file, bk, &outside);
    snprintf (note, sizeof note, "%s%s%s%s",
              outside ? " [outside the image's directory]" : "",
              refused ? " [refused by backing-policy=" : "",
              refused ? refused : "", refused ? "]" : "");
  }

  if (json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, file);
    printf (",\n  \"format\": \"add-cow\",\n"
            "  \"virtual-size\": %" PRIu64 ",\n"
            "  \"cluster-size\": %" PRIu64 ",\n"
            "  \"header-size\": %" PRIu32 ",\n"
            "  \"features\": %" PRIu64 ",\n"
            "  \"compat-features\": %" PRIu64 ",\n"
            "  \"all-allocated\": %s,\n"
            "  \"fresh\": %s,\n"
            "  \"clusters\": %" PRIu64 ",\n"
            "  \"clusters-in-image\": %" PRIu64 ",\n"
            "  \"image-filename\": ",
            disk_size, UINT64_C (1) << h.cluster_bits, h.header_size,
            h.features, h.compat_features, all ? "true" : "false",
            fresh ? "true" : "false", nclusters, in_image);
    json_string (stdout, h.image_file);
    printf (",\n  \"image-full-path\": ");
    json_string (stdout, image ? image : "");
    printf (",\n  \"image-exists\": %s,\n  \"image-format\": ",
            image_ok ? "true" : "false");
    json_string (stdout, h.image_format);
    printf (",\n  \"backing-filename\": ");
    if (h.backing_file) {
      json_string (stdout, h.backing_file);
      printf (",\n  \"backing-format\": ");
      json_string (stdout, h.backing_format);
      printf (",\n  \"backing-filename-format\": ");
      json_string (stdout, h.backing_format);
      printf (",\n  \"backing-supplied\": %s", supplied ? "true" : "false");
      /* A label is no file: nothing to resolve, find or judge. */
      if (!supplied) {
        printf (",\n  \"backing-full-path\": ");
        json_string (stdout, bk ? bk : "");
        printf (",\n  \"backing-exists\": %s",
                backing_ok ? "true" : "false");
        printf (",\n  \"backing-outside\": %s",
                outside ? "true" : "false");
        if (refused)
          printf (",\n  \"backing-refused-by\": \"%s\"", refused);
      }
    }
    else
      printf ("null");
    printf ("\n}\n");
  }
  else {
    printf ("image:              %s\n"
            "file format:        add-cow\n"
            "virtual size:       %" PRIu64 " bytes (the image's size)\n"
            "cluster size:       %" PRIu64 "\n"
            "header size:        %" PRIu32 "\n"
            "image file:         %s (%s)%s\n"
            "backing file:       %s%s%s%s%s%s\n"
            "compat features:    0x%" PRIx64 "%s\n"
            "clusters:           %" PRIu64 "\n"
            "in the image:       %" PRIu64 "%s\n",
            file, disk_size, UINT64_C (1) << h.cluster_bits, h.header_size,
            h.image_file, h.image_format, image_ok ? "" : " [missing]",
            h.backing_file ? h.backing_file : "none",
            h.backing_file ? " (" : "",
            h.backing_file ? h.backing_format : "",
            h.backing_file ? ")" : "",
            backing_ok ? "" : " [missing]", note,
            h.compat_features, all ? " (ALL_ALLOCATED)" : "",
            nclusters, in_image, fresh ? " (fresh: no bitmap yet)" : "");
  }
  addcow_header_free (&h);
  return EXIT_SUCCESS;
}

static void
ignore_error (const char *msg)
{
}

static int
addcow_map_verb (int argc, char **argv)
{
  bool json, image_ok, all, fresh, first = true;
  struct addcow_header h;
  uint64_t fsz, disk_size, nclusters, bmlen, c = 0, cs;
  CLEANUP_FREE uint8_t *bm = NULL;
  const char *file, *zero_src;
  struct qad_blockdev *backing = NULL;
  struct map_where w = { 0 };
  struct map_human_range pend = { 0 };
  char *image = NULL, *bk = NULL;
  uint64_t off;
  int ret = EXIT_SUCCESS;
  int fd;

  file = parse_file_args (argc, argv, "add-cow", NULL, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  if (open_sidecar (file, &fd, &h, &fsz, &disk_size, &image_ok) == -1)
    return EXIT_FAILURE;
  if (!image_ok) {
    fprintf (stderr, "qad-img: %s: the image file %s is missing: "
             "the disk size is unknown\n", file, h.image_file);
    close (fd);
    addcow_header_free (&h);
    return EXIT_FAILURE;
  }
  all = h.compat_features & ADDCOW_COMPAT_ALL_ALLOCATED;
  nclusters = addcow_nr_clusters (disk_size, h.cluster_bits);
  cs = UINT64_C (1) << h.cluster_bits;
  if (!all && addcow_load_bitmap (fd, file, &h, fsz, disk_size, &bm, &bmlen,
                                  &fresh) == -1) {
    close (fd);
    addcow_header_free (&h);
    return EXIT_FAILURE;
  }
  close (fd);
  zero_src = h.backing_file ? "backing" : "zero";
  image = addcow_resolve_name (file, h.image_file);
  /* The backing file, to say what bit-0 ranges read (an NBD backing,
   * a missing file or one the server's plugin supplies: unknown,
   * reported as data).  A supplied backing's label is never opened,
   * even when it names a file.
   */
  if (!all && h.backing_file && !addcow_backing_supplied (&h)) {
    bk = addcow_resolve_name (file, h.backing_file);
    if (bk && !addcow_name_is_uri (bk)) {
      qad_set_error_handler (ignore_error); /* map works without it */
      backing = qed_open_backing (bk, h.backing_format, false);
      qad_set_error_handler (qad_img_print_error);
    }
  }

  if (json)
    printf ("[");
  else
    printf (MAP_HUMAN_HEADER);
  while (c < nclusters) {
    bool v = true;
    uint64_t run = all ? nclusters : bits_run (bm, c, nclusters, &v);
    uint64_t start = c * cs;
    uint64_t end = c + run == nclusters ? disk_size : (c + run) * cs;
    const char *src = v ? "image" : zero_src;

    for (off = start; off < end; off += w.len) {
      if (v)                    /* in the raw image, at the same offset */
        w = (struct map_where) { .len = end - off, .present = true,
                                 .data = true, .has_offset = true,
                                 .offset = off, .name = image };
      else if (!h.backing_file)
        w = (struct map_where) { .len = end - off, .zero = true };
      else if (backing == NULL)
        w = (struct map_where) { .len = end - off, .depth = 1,
                                 .present = true, .data = true };
      else if (off >= backing->size)  /* zeroes past the backing's end */
        w = (struct map_where) { .len = end - off, .depth = 1,
                                 .zero = true };
      else if (map_resolve (backing, off, MIN (end, backing->size) - off,
                            1, &w) == -1) {
        ret = EXIT_FAILURE;
        goto out;
      }
      /* qemu-img map's shape, plus which add-cow bit says so. */
      if (json) {
        printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
                ", \"depth\": %d, \"present\": %s, \"zero\": %s"
                ", \"data\": %s", first ? "" : ",\n", off, w.len,
                w.depth, w.present ? "true" : "false",
                w.zero ? "true" : "false", w.data ? "true" : "false");
        if (w.has_offset)
          printf (", \"offset\": %" PRIu64, w.offset);
        printf (", \"source\": \"%s\"}", src);
      }
      else if (w.data && w.has_offset) {
        if (pend.len && pend.name == w.name &&
            pend.start + pend.len == off &&
            pend.offset + pend.len == w.offset)
          pend.len += w.len;
        else {
          map_print_human_range (&pend, file);
          pend = (struct map_human_range) { off, w.len, w.offset, w.name };
        }
      }
      first = false;
    }
    c += run;
  }
  if (json)
    printf ("]\n");
  else
    map_print_human_range (&pend, file);
 out:
  qad_blockdev_close (backing);
  free (image);
  free (bk);
  addcow_header_free (&h);
  return ret;
}

static int
addcow_check_verb (int argc, char **argv)
{
  bool json, repair;
  struct addcow_check_result r;
  const char *file;

  file = parse_file_args (argc, argv, "add-cow", &repair, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  if (addcow_check (file, repair, print_check_problem, &json, &r) == -1)
    return EXIT_FAILURE;
  if (json) {
    /* add-cow has no leaks: every cluster of the bitmap is the disk's. */
    const struct check_field fields[] = {
      { "clusters", false, r.nclusters },
      { "clusters-in-image", false, r.in_image },
      { "total-clusters", false, r.nclusters },
      { "allocated-clusters", false, r.in_image },
      { "all-allocated", true, r.all_allocated },
      { 0 }
    };
    const struct check_report report = {
      file, "add-cow", r.corruptions, r.repaired, 0, 0, fields
    };
    print_check_json (&report);
  }
  else {
    if (r.corruptions == 0)
      printf ("No errors were found on the add-cow file.\n");
    else
      printf ("%" PRIu64 " errors were found on the add-cow file.\n",
              r.corruptions);
    if (r.repaired)
      printf ("%" PRIu64 " problems were repaired.\n", r.repaired);
    printf ("%" PRIu64 "/%" PRIu64 " clusters are in the image%s.\n",
            r.in_image, r.nclusters,
            r.all_allocated ? " (ALL_ALLOCATED)" : "");
  }
  return r.corruptions ? EXIT_CHECK_CORRUPT : EXIT_SUCCESS;
}

/* Remove FILE (if it exists) unless another process holds it. */
static int
replace_unlocked (const char *file)
{
  int fd = open (file, O_RDWR | O_CLOEXEC);

  if (fd == -1) {
    if (errno == ENOENT)
      return 0;
    fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
    return -1;
  }
  if (addcow_lock_fd (fd, file) == -1) {
    close (fd);
    return -1;
  }
  if (unlink (file) == -1) {
    fprintf (stderr, "qad-img: %s: unlink: %s\n", file, strerror (errno));
    close (fd);
    return -1;
  }
  close (fd);
  return 0;
}

static int
addcow_create_verb (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "image", required_argument, NULL, OPT_IMAGE },
    { "backing", required_argument, NULL, OPT_BACKING },
    { "backing-format", required_argument, NULL, OPT_BACKING_FORMAT },
    { "cluster-size", required_argument, NULL, OPT_CLUSTER_SIZE },
    { "size", required_argument, NULL, OPT_SIZE },
    { 0 }
  };
  const char *image_arg = NULL, *backing_arg = NULL, *bfmt = NULL;
  unsigned long long cluster_size, size = 0;
  uint32_t cluster_bits = ADDCOW_DEFAULT_CLUSTER_BITS;
  bool have_size = false, need_size;
  CLEANUP_FREE char *image_name = NULL, *backing_name = NULL;
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  struct addcow_header h;
  struct stat st;
  const char *file;
  int c, r, ifd;

  while ((c = getopt_long (argc, argv, "b:F:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_IMAGE: image_arg = optarg; break;
    case OPT_BACKING: case 'b': backing_arg = optarg; break;
    case OPT_BACKING_FORMAT: case 'F': bfmt = optarg; break;
    case OPT_CLUSTER_SIZE:
      if (parse_size ("--cluster-size", optarg, &cluster_size) == -1 ||
          addcow_cluster_bits_for (cluster_size, "--cluster-size", optarg,
                                   &cluster_bits) == -1)
        return EXIT_FAILURE;
      break;
    case OPT_SIZE:
      if (parse_size ("--size", optarg, &size) == -1)
        return EXIT_FAILURE;
      have_size = true;
      break;
    default: return EXIT_FAILURE;
    }
  }
  /* A trailing SIZE argument, as for the other formats. */
  if (optind == argc - 2) {
    if (parse_size ("SIZE", argv[argc - 1], &size) == -1)
      return EXIT_FAILURE;
    have_size = true;
  }
  else if (optind != argc - 1) {
    fprintf (stderr,
             "qad-img: usage: qad-img create --format=add-cow FILE.add-cow "
             "--image=DISK.raw [--backing=FILE|URI] "
             "[--backing-format=raw|qed] "
             "[--cluster-size=4K..2M] [--size=SIZE | SIZE]\n");
    return EXIT_FAILURE;
  }
  file = argv[optind];
  if (image_arg == NULL) {
    fprintf (stderr, "qad-img: create: --image=DISK.raw is required "
             "for add-cow\n");
    return EXIT_FAILURE;
  }
  if (backing_arg && !addcow_name_is_uri (backing_arg) &&
      access (backing_arg, R_OK) == -1) {
    fprintf (stderr, "qad-img: backing file %s: %s\n", backing_arg,
             strerror (errno));
    return EXIT_FAILURE;
  }
  if (addcow_creation_backing (backing_arg, bfmt, "--backing",
                               "--backing-format", &bfmt) == -1)
    return EXIT_FAILURE;
  if (backing_arg) {
    bool uri = addcow_name_is_uri (backing_arg);
    /* Without a size, a missing image takes the backing's size.  A
     * backing policy other than follow is checked on the backing (and
     * its chain) as the filter will open it, before anything is made.
     */
    need_size = !have_size && !uri && stat (image_arg, &st) == -1;
    if (tool_backing_policy != QAD_BACKING_FOLLOW &&
        (tool_backing_rules (file, &rules) == -1 ||
         qad_backing_check_name (&rules, file, backing_arg, uri) == -1))
      return EXIT_FAILURE;
    if (need_size || (!uri && tool_backing_policy != QAD_BACKING_FOLLOW)) {
      struct qad_blockdev *b =
        qed_open_backing_checked (file, backing_arg, backing_arg, bfmt,
                                  false, &rules, NULL, 0);
      if (b == NULL)
        return EXIT_FAILURE;
      if (need_size) {
        size = b->size;
        have_size = true;
      }
      qad_blockdev_close (b);
    }
    backing_name = addcow_relative_name (file, backing_arg);
    if (backing_name == NULL)
      return EXIT_FAILURE;
  }

  /* The image: create it or grow it to SIZE when asked. */
  ifd = open (image_arg, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (ifd == -1 || fstat (ifd, &st) == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", image_arg, strerror (errno));
    return EXIT_FAILURE;
  }
  /* The image must not be in its own backing chain, under any name. */
  if (backing_arg && !addcow_name_is_uri (backing_arg)) {
    struct qed_file_id image_id = { st.st_dev, st.st_ino, "the image" };
    struct qad_blockdev *b =
      qed_open_backing_checked (file, backing_arg, backing_arg, bfmt, false,
                                &rules, &image_id, 1);
    if (b == NULL) {
      close (ifd);
      return EXIT_FAILURE;
    }
    qad_blockdev_close (b);
  }
  if (have_size && S_ISREG (st.st_mode) && (uint64_t) st.st_size != size) {
    if ((uint64_t) st.st_size > size) {
      fprintf (stderr, "qad-img: %s is %" PRIu64 " bytes, larger than "
               "--size=%llu (refusing to shrink it)\n", image_arg,
               (uint64_t) st.st_size, size);
      close (ifd);
      return EXIT_FAILURE;
    }
    if (ftruncate (ifd, size) == -1) {
      fprintf (stderr, "qad-img: %s: %s\n", image_arg, strerror (errno));
      close (ifd);
      return EXIT_FAILURE;
    }
  }
  else if (!have_size && st.st_size == 0)
    fprintf (stderr, "qad-img: warning: %s is empty (give --size)\n",
             image_arg);
  if (fstat (ifd, &st) == -1) {
    close (ifd);
    return EXIT_FAILURE;
  }
  close (ifd);
  size = st.st_size;

  image_name = addcow_relative_name (file, image_arg);
  if (image_name == NULL)
    return EXIT_FAILURE;
  if (addcow_header_init (&h, cluster_bits, image_name, "raw",
                          backing_name, bfmt) == -1)
    return EXIT_FAILURE;
  /* --force: replace an existing file, but never one being served. */
  if (qad_force && replace_unlocked (file) == -1) {
    addcow_header_free (&h);
    return EXIT_FAILURE;
  }
  r = addcow_create_file (file, &h, true, size);
  addcow_header_free (&h);
  if (r == -1)
    return EXIT_FAILURE;
  printf ("Formatting '%s', fmt=add-cow image=%s size=%llu cluster_size=%"
          PRIu64, file, image_name, size, UINT64_C (1) << cluster_bits);
  if (backing_name)
    printf (" backing_file=%s backing_fmt=%s", backing_name, bfmt);
  printf ("\n");
  return EXIT_SUCCESS;
}

const struct qad_format addcow_format = {
  .name = "add-cow",
  .aliases = "addcow acow",
  .magic = { 'A', 'C', 'O', 'W' },
  .create = addcow_create_verb,
  .info = addcow_info,
  .check = addcow_check_verb,
  .map = addcow_map_verb,
  .rebase = addcow_rebase_verb,
  .amend = addcow_amend_verb,
};
