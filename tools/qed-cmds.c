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

#include "cleanup.h"
#include "qad-img.h"
#include "qed-image.h"

enum { OPT_FORMAT = 256, OPT_JSON };

static struct qed_image *
open_image (const char *file)
{
  struct qed_open_options opts = { .readonly = true };
  return qed_open (file, &opts);
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

static void
print_chain_json (struct qed_image *img)
{
  struct qad_blockdev *b = img->backing;
  bool first = true;

  printf ("  \"backing-chain\": [");
  while (b) {
    bool is_qed = b->ops == img->dev.ops;
    printf ("%s\n    { \"filename\": ", first ? "" : ",");
    json_string (stdout, b->name);
    printf (", \"format\": \"%s\", \"virtual-size\": %" PRIu64 " }",
            is_qed ? "qed" : "raw", b->size);
    first = false;
    b = is_qed ? ((struct qed_image *) b)->backing : NULL;
  }
  printf ("%s]", first ? "" : "\n  ");
}

static void
print_chain_text (struct qed_image *img)
{
  struct qad_blockdev *b = img->backing;
  unsigned depth = 1;

  while (b) {
    bool is_qed = b->ops == img->dev.ops;
    printf ("backing file %u:     %s (%s, %" PRIu64 " bytes)\n",
            depth++, b->name, is_qed ? "qed" : "raw", b->size);
    b = is_qed ? ((struct qed_image *) b)->backing : NULL;
  }
}

static int
qed_info (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "format", required_argument, NULL, OPT_FORMAT },
    { "json", no_argument, NULL, OPT_JSON },
    { NULL }
  };
  bool json = false;
  struct qed_image *img;
  const struct qed_header *h;
  uint64_t data, zero;
  CLEANUP_FREE char *bname = NULL;
  char features[256], compat[64], autoclear[64];
  int c;

  while ((c = getopt_long (argc, argv, "f:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_FORMAT: case 'f': break;
    case OPT_JSON: json = true; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1) {
    fprintf (stderr, "usage: qad-img info FILE.qed [--json]\n");
    return EXIT_FAILURE;
  }
  img = open_image (argv[optind]);
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
  snprintf (autoclear, sizeof autoclear, "0x%" PRIx64, h->autoclear_features);

  if (json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, argv[optind]);
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
    printf (",\n");
    print_chain_json (img);
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
            argv[optind], h->image_size, img->file_end, h->cluster_size,
            h->table_size, h->header_size, h->l1_table_offset,
            features, compat, autoclear, data, zero);
    if (bname)
      printf ("backing file name:  %s\n", bname);
    print_chain_text (img);
  }
  qed_close (img);
  return EXIT_SUCCESS;
}

static int
qed_map_verb (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "format", required_argument, NULL, OPT_FORMAT },
    { "json", no_argument, NULL, OPT_JSON },
    { "output", required_argument, NULL, 'o' },
    { NULL }
  };
  bool json = false, first = true;
  struct qed_image *img;
  uint64_t off = 0;
  int c;

  while ((c = getopt_long (argc, argv, "f:o:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_FORMAT: case 'f': break;
    case OPT_JSON: json = true; break;
    case 'o': json = strcmp (optarg, "json") == 0; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1) {
    fprintf (stderr, "usage: qad-img map FILE.qed [--json]\n");
    return EXIT_FAILURE;
  }
  img = open_image (argv[optind]);
  if (img == NULL)
    return EXIT_FAILURE;

  if (json)
    printf ("[");
  else
    printf ("%-20s %-20s %-20s %s\n", "Offset", "Length", "Mapped to",
            "File");
  while (off < img->dev.size) {
    struct qed_mapping m;
    uint64_t len;
    uint32_t flags;
    bool data, zero;

    if (qed_map (img, off, img->dev.size - off, &m) == -1) {
      qed_close (img);
      return EXIT_FAILURE;
    }
    len = m.length;
    if (m.kind == QED_KIND_UNALLOCATED && img->backing) {
      if (qad_blockdev_extent (img->backing, off, len, &len, &flags) == -1) {
        qed_close (img);
        return EXIT_FAILURE;
      }
      data = !(flags & QAD_EXTENT_HOLE);
      zero = flags & QAD_EXTENT_ZERO;
    }
    else {
      data = m.kind == QED_KIND_DATA;
      zero = !data;
    }
    /* Same shape as qemu-img map --output=json. */
    if (json) {
      printf ("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
              ", \"depth\": %d, \"present\": %s, \"zero\": %s"
              ", \"data\": %s",
              first ? "" : ",\n", off, len,
              m.kind == QED_KIND_UNALLOCATED && img->backing ? 1 : 0,
              m.kind == QED_KIND_UNALLOCATED && !img->backing ? "false" : "true",
              zero ? "true" : "false", data ? "true" : "false");
      if (m.kind == QED_KIND_DATA)
        printf (", \"offset\": %" PRIu64, m.host_offset);
      printf ("}");
    }
    else if (m.kind == QED_KIND_DATA)
      printf ("0x%-18" PRIx64 " 0x%-18" PRIx64 " 0x%-18" PRIx64 " %s\n",
              off, len, m.host_offset, argv[optind]);
    first = false;
    off += len;
  }
  if (json)
    printf ("]\n");
  qed_close (img);
  return EXIT_SUCCESS;
}

const struct qad_format qed_format = {
  .name = "qed",
  .magic = { 'Q', 'E', 'D', '\0' },
  .info = qed_info,
  .map = qed_map_verb,
};
