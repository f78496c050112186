/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img verbs for QED images.  All format knowledge is in
 * common/qed; this file parses options and prints.
 */

#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "qad-error.h"
#include "qad-img.h"
#include "qed-check.h"
#include "qed-create.h"
#include "qed-image.h"

enum { OPT_JSON = 256, OPT_CLUSTER_SIZE,
       OPT_TABLE_SIZE, OPT_BACKING, OPT_BACKING_FORMAT };

/* Open FILE read-only, its backing chain under the tool's backing
 * policy (*RULES, which the caller frees).  With REPORT (info), a
 * refused backing file ends the chain instead of failing the open.
 */
static struct qed_image *
open_image (const char *file, struct qad_backing_rules *rules, bool report)
{
  struct qed_open_options opts = {
    .readonly = true, .backing_rules = rules, .backing_refusal_ok = report,
  };

  if (tool_backing_rules (file, rules) == -1)
    return NULL;
  return qed_open (file, &opts);
}

/* The last image of the chain that was opened, and whether its own
 * backing file was refused.
 */
static const struct qed_image *
chain_end (const struct qed_image *img)
{
  while (img->backing && img->backing->ops == img->dev.ops)
    img = (const struct qed_image *) img->backing;
  return img;
}

/* Sum the guest bytes held in data clusters. */
static int
allocated_bytes (struct qed_image *img, uint64_t *data, uint64_t *zero)
{
  uint64_t off = 0;

  *data = *zero = 0;
  while (off < img->dev.size) {
    struct qed_mapping m;
    if (qed_map (img, off, img->dev.size - off, &m) == -1)
      return -1;
    if (m.kind == QED_KIND_DATA)
      *data += m.length;
    else if (m.kind == QED_KIND_ZERO)
      *zero += m.length;
    off += m.length;
  }
  return 0;
}

/* The chain as opened, then the backing file that the policy refused
 * (not opened).  Every name that leads outside the directories the
 * "inside" policy allows is flagged, whatever the policy.
 */
static void
print_chain_json (struct qed_image *img, const struct qad_backing_rules *r,
                  const char *top)
{
  struct qad_blockdev *b = img->backing;
  const struct qed_image *end = chain_end (img);
  bool first = true;

  printf ("  \"backing-chain\": [");
  while (b) {
    bool is_qed = b->ops == img->dev.ops;
    printf ("%s\n    { \"filename\": ", first ? "" : ",");
    json_string (stdout, b->name);
    printf (", \"format\": \"%s\", \"virtual-size\": %" PRIu64
            ", \"outside\": %s }", is_qed ? "qed" : "raw", b->size,
            qad_backing_leaves (r, top, b->name) ? "true" : "false");
    first = false;
    b = is_qed ? ((struct qed_image *) b)->backing : NULL;
  }
  if (end->backing_refused) {
    printf ("%s\n    { \"filename\": ", first ? "" : ",");
    json_string (stdout, end->backing_path);
    printf (", \"outside\": %s, \"refused-by\": \"%s\" }",
            qad_backing_leaves (r, top, end->backing_path) ? "true" : "false",
            qad_backing_policy_name (r->policy));
    first = false;
  }
  printf ("%s]", first ? "" : "\n  ");
}

static void
print_chain_text (struct qed_image *img, const struct qad_backing_rules *r,
                  const char *top)
{
  struct qad_blockdev *b = img->backing;
  const struct qed_image *end = chain_end (img);
  const char *outside = " [outside the image's directory]";
  unsigned depth = 1;

  while (b) {
    bool is_qed = b->ops == img->dev.ops;
    printf ("backing file %u:     %s (%s, %" PRIu64 " bytes)%s\n",
            depth++, b->name, is_qed ? "qed" : "raw", b->size,
            qad_backing_leaves (r, top, b->name) ? outside : "");
    b = is_qed ? ((struct qed_image *) b)->backing : NULL;
  }
  if (end->backing_refused)
    printf ("backing file %u:     %s (not opened: refused by "
            "backing-policy=%s)%s\n", depth, end->backing_path,
            qad_backing_policy_name (r->policy),
            qad_backing_leaves (r, top, end->backing_path) ? outside : "");
}

/* The first error message, kept by capture_error. */
static char *captured_error;

static void
capture_error (const char *msg)
{
  if (captured_error == NULL)
    captured_error = strdup (msg);
}

/* Open FILE with its backing chain; when only the chain fails, open
 * the image alone and return the chain's error in *BACKING_ERROR.
 */
static struct qed_image *
open_image_for_info (const char *file, struct qad_backing_rules *rules,
                     char **backing_error)
{
  struct qed_open_options alone = { .readonly = true, .no_backing = true };
  struct qed_image *img;

  img = qed_open (file, &alone);       /* errors about the image itself */
  if (img == NULL)
    return NULL;
  if (!(img->header.features & QED_F_BACKING_FILE))
    return img;
  qed_close (img);
  qad_set_error_handler (capture_error);
  img = open_image (file, rules, true);
  qad_set_error_handler (qad_img_print_error);
  if (img)
    free (captured_error);
  else {
    *backing_error = captured_error;
    img = qed_open (file, &alone);
  }
  captured_error = NULL;
  return img;
}

static int
qed_info (int argc, char **argv)
{
  const char *file;
  bool json;
  struct qed_image *img;
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  const struct qed_header *h;
  uint64_t data, zero;
  CLEANUP_FREE char *bname = NULL;
  CLEANUP_FREE char *backing_error = NULL;
  uint64_t actual_size = 0;
  struct stat st;
  char features[256], compat[64], autoclear[64];

  file = parse_file_args (argc, argv, "qed", NULL, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  /* As qemu-img info: the image's own header and tables are shown even
   * when its backing file cannot be opened; the reason is reported.
   */
  img = open_image_for_info (file, &rules, &backing_error);
  if (img == NULL)
    return EXIT_FAILURE;
  h = &img->header;
  if (allocated_bytes (img, &data, &zero) == -1 ||
      qed_read_backing_name (img, &bname) == -1) {
    qed_close (img);
    return EXIT_FAILURE;
  }
  qed_features_string (h->features, features, sizeof features);
  snprintf (compat, sizeof compat, "0x%" PRIx64, h->compat_features);
  if (fstat (img->fd, &st) == 0)
    actual_size = (uint64_t) st.st_blocks * 512;
  snprintf (autoclear, sizeof autoclear, "0x%" PRIx64, h->autoclear_features);

  if (json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, file);
    printf (",\n  \"format\": \"qed\",\n"
            "  \"virtual-size\": %" PRIu64 ",\n"
            "  \"cluster-size\": %" PRIu32 ",\n"
            "  \"table-size\": %" PRIu32 ",\n"
            "  \"header-size\": %" PRIu32 ",\n"
            "  \"l1-table-offset\": %" PRIu64 ",\n"
            "  \"features\": %" PRIu64 ",\n"
            "  \"features-names\": ",
            h->image_size, h->cluster_size, h->table_size, h->header_size,
            h->l1_table_offset, h->features);
    json_string (stdout, features);
    printf (",\n  \"compat-features\": %" PRIu64 ",\n"
            "  \"autoclear-features\": %" PRIu64 ",\n"
            "  \"need-check\": %s,\n"
            "  \"file-size\": %" PRIu64 ",\n"
            "  \"allocated-bytes\": %" PRIu64 ",\n"
            "  \"zero-bytes\": %" PRIu64 ",\n"
            "  \"backing-filename\": ",
            h->compat_features, h->autoclear_features,
            h->features & QED_F_NEED_CHECK ? "true" : "false",
            img->file_end, data, zero);
    if (bname)
      json_string (stdout, bname);
    else
      printf ("null");
    if (bname) {
      /* Recorded (NO_PROBE: raw) or probed; unknown when missing. */
      if (h->features & QED_F_BACKING_FORMAT_NO_PROBE || img->backing)
        printf (",\n  \"backing-filename-format\": \"%s\"",
                img->backing_raw ||
                h->features & QED_F_BACKING_FORMAT_NO_PROBE ? "raw" : "qed");
      printf (",\n  \"backing-exists\": %s",
              backing_error ? "false" : "true");
      if (backing_error) {
        printf (",\n  \"backing-error\": ");
        json_string (stdout, backing_error);
      }
    }
    printf (",\n  \"dirty-flag\": %s",
            h->features & QED_F_NEED_CHECK ? "true" : "false");
    printf (",\n  \"actual-size\": %" PRIu64 ",\n", actual_size);
    print_chain_json (img, &rules, file);
    printf ("\n}\n");
  }
  else {
    printf ("image:              %s\n"
            "file format:        qed\n"
            "virtual size:       %" PRIu64 " bytes\n"
            "file size:          %" PRIu64 " bytes\n"
            "cluster size:       %" PRIu32 "\n"
            "table size:         %" PRIu32 " clusters\n"
            "header size:        %" PRIu32 " clusters\n"
            "L1 table offset:    %" PRIu64 "\n"
            "features:           %s\n"
            "compat features:    %s\n"
            "autoclear features: %s\n"
            "allocated bytes:    %" PRIu64 "\n"
            "zero-cluster bytes: %" PRIu64 "\n",
            file, h->image_size, img->file_end, h->cluster_size,
            h->table_size, h->header_size, h->l1_table_offset,
            features, compat, autoclear, data, zero);
    if (bname)
      printf ("backing file name:  %s\n", bname);
    if (backing_error)
      printf ("backing file:       missing: %s\n", backing_error);
    print_chain_text (img, &rules, file);
  }
  qed_close (img);
  return EXIT_SUCCESS;
}

static int
qed_map_verb (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "output", required_argument, NULL, 'o' },
    { 0 }
  };
  bool json = false, first = true;
  struct qed_image *img;
  struct map_human_range pend = { 0 };
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  uint64_t off = 0;
  int c;

  while ((c = getopt_long (argc, argv, "o:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_JSON: json = true; break;
    case 'o': json = strcmp (optarg, "json") == 0; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1) {
    fprintf (stderr, "qad-img: usage: qad-img map FILE.qed [--json]\n");
    return EXIT_FAILURE;
  }
  img = open_image (argv[optind], &rules, false);
  if (img == NULL)
    return EXIT_FAILURE;

  if (json)
    printf ("[");
  else
    printf (MAP_HUMAN_HEADER);
  while (off < img->dev.size) {
    struct map_where w;

    if (map_resolve (&img->dev, off, img->dev.size - off, 0, &w) == -1) {
      qed_close (img);
      return EXIT_FAILURE;
    }
    /* Same shape as qemu-img map --output=json. */
    if (json) {
      printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
              ", \"depth\": %d, \"present\": %s, \"zero\": %s"
              ", \"data\": %s",
              first ? "" : ",\n", off, w.len, w.depth,
              w.present ? "true" : "false", w.zero ? "true" : "false",
              w.data ? "true" : "false");
      if (w.has_offset)
        printf (", \"offset\": %" PRIu64, w.offset);
      printf ("}");
    }
    else if (w.data && w.has_offset) {
      /* As qemu-img: data ranges only, merged while they continue in
       * the same file.
       */
      if (pend.len && pend.name == w.name &&
          pend.start + pend.len == off && pend.offset + pend.len == w.offset)
        pend.len += w.len;
      else {
        map_print_human_range (&pend, argv[optind]);
        pend = (struct map_human_range) { off, w.len, w.offset, w.name };
      }
    }
    first = false;
    off += w.len;
  }
  if (!json)
    map_print_human_range (&pend, argv[optind]);
  if (json)
    printf ("]\n");
  qed_close (img);
  return EXIT_SUCCESS;
}

static int
qed_check_verb (int argc, char **argv)
{
  const char *file;
  bool json, repair;
  struct qed_open_options opts = { .lock = true };
  struct qed_check_result res;
  struct qed_image *img;
  uint64_t corrupt, leaks;

  file = parse_file_args (argc, argv, "qed", &repair, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  /* Check without repair may run while a server uses the image (like
   * qemu-img check -U); repair needs the write lock.
   */
  opts.readonly = !repair;
  opts.lock = repair;
  opts.no_backing = true;
  img = qed_open (file, &opts);
  if (img == NULL)
    return EXIT_FAILURE;
  if (qed_check_progress (img, repair, &res, print_check_problem, &json,
                          qad_progress && !json ? print_progress : NULL,
                          NULL) == -1) {
    qed_close (img);
    return EXIT_FAILURE;
  }
  corrupt = qed_check_corruptions_left (&res);
  leaks = qed_check_leaks_left (&res);

  if (json) {
    /* total-clusters counts guest clusters, as qemu-img's does. */
    const struct check_field fields[] = {
      { "leaks-punched", false, res.leaks_punched },
      { "need-check", true, res.need_check },
      { "need-check-cleared", true, res.need_check_cleared },
      { "l2-tables", false, res.l2_tables },
      { "allocated-clusters", false, res.data_clusters },
      { "zero-clusters", false, res.zero_clusters },
      { "total-clusters", false,
        (img->header.image_size + img->header.cluster_size - 1)
        / img->header.cluster_size },
      { "file-clusters", false, res.file_clusters },
      { "image-end-offset", false, res.image_end_offset },
      { 0 }
    };
    const struct check_report report = {
      file, "qed", corrupt, res.corruptions_fixed,
      leaks, res.leaks_fixed, fields
    };
    print_check_json (&report);
  }
  else {
    if (res.corruptions_fixed)
      printf ("Repaired %" PRIu64 " corruption%s (the data they pointed at "
              "is lost).\n", res.corruptions_fixed,
              res.corruptions_fixed == 1 ? "" : "s");
    if (res.leaks_fixed)
      printf ("Reclaimed %" PRIu64 " leaked cluster%s.\n", res.leaks_fixed,
              res.leaks_fixed == 1 ? "" : "s");
    if (res.leaks_punched)
      printf ("%" PRIu64 " leaked cluster%s could not be moved; their "
              "space was punched.\n", res.leaks_punched,
              res.leaks_punched == 1 ? "" : "s");
    if (res.need_check_cleared)
      printf ("Cleared NEED_CHECK.\n");
    else if (res.need_check)
      printf ("The image has NEED_CHECK set.\n");
    if (corrupt)
      printf ("%" PRIu64 " errors were found on the image.\n", corrupt);
    if (leaks)
      printf ("%" PRIu64 " leaked clusters were found on the image.\n"
              "This means waste of disk space, but no harm to data.\n",
              leaks);
    if (!corrupt && !leaks)
      printf ("No errors were found on the image.\n");
    printf ("%" PRIu64 " data clusters, %" PRIu64 " zero clusters, %" PRIu64
            " L2 tables; image end offset: %" PRIu64 "\n",
            res.data_clusters, res.zero_clusters, res.l2_tables,
            res.image_end_offset);
  }
  if (qed_close (img) == -1)
    return EXIT_FAILURE;
  if (corrupt)
    return EXIT_CHECK_CORRUPT;
  if (leaks)
    return EXIT_CHECK_LEAKS;
  return EXIT_SUCCESS;
}

static int
qed_create_verb (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "cluster-size", required_argument, NULL, OPT_CLUSTER_SIZE },
    { "table-size", required_argument, NULL, OPT_TABLE_SIZE },
    { "backing", required_argument, NULL, OPT_BACKING },
    { "backing-format", required_argument, NULL, OPT_BACKING_FORMAT },
    { 0 }
  };
  struct qed_create_options opts = { 0 };
  CLEANUP_BACKING_RULES struct qad_backing_rules rules = { 0 };
  unsigned long long v;
  const char *file;
  int c;

  while ((c = getopt_long (argc, argv, "b:F:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_CLUSTER_SIZE:
      if (parse_size ("--cluster-size", optarg, &v) == -1)
        return EXIT_FAILURE;
      if (v > UINT32_MAX) {
        fprintf (stderr, "qad-img: --cluster-size=%s: too large\n", optarg);
        return EXIT_FAILURE;
      }
      opts.cluster_size = v;
      break;
    case OPT_TABLE_SIZE:
      if (parse_size ("--table-size", optarg, &v) == -1)
        return EXIT_FAILURE;
      if (v == 0 || v > 16) {
        fprintf (stderr, "qad-img: --table-size=%s: must be 1, 2, 4, 8 "
                 "or 16\n", optarg);
        return EXIT_FAILURE;
      }
      opts.table_size = v;
      break;
    case OPT_BACKING: case 'b': opts.backing = optarg; break;
    case OPT_BACKING_FORMAT: case 'F': opts.backing_format = optarg; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind >= argc || argc - optind > 2 ||
      (argc - optind == 1 && !opts.backing)) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img create FILE.qed SIZE [--cluster-size=N] "
             "[--table-size=N] [--backing=FILE [--backing-format=raw|qed]]\n"
             "qad-img: SIZE may be omitted with --backing\n");
    return EXIT_FAILURE;
  }
  file = argv[optind];
  if (argc - optind == 2) {
    if (parse_size ("SIZE", argv[optind + 1], &v) == -1)
      return EXIT_FAILURE;
    /* As qemu-img: rounded up to whole 512-byte sectors. */
    if (v == 0 || v > UINT64_MAX - 511) {
      fprintf (stderr, "qad-img: SIZE=%s: must be between 1 and 2^64-512 "
               "bytes\n", argv[optind + 1]);
      return EXIT_FAILURE;
    }
    opts.size = (v + 511) & ~511ULL;
  }
  if (opts.backing) {
    if (tool_backing_rules (file, &rules) == -1)
      return EXIT_FAILURE;
    opts.backing_rules = &rules;
  }
  if (qed_create (file, &opts) == -1)
    return EXIT_FAILURE;
  return EXIT_SUCCESS;
}

const struct qad_format qed_format = {
  .name = "qed",
  .magic = { 'Q', 'E', 'D', '\0' },
  .create = qed_create_verb,
  .info = qed_info,
  .check = qed_check_verb,
  .map = qed_map_verb,
  .rebase = qed_rebase_verb,
  .amend = qed_amend_verb,
};
