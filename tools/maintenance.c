/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the maintenance verbs (resize.c, commit.c) share: their option
 * parsing, the format of a file they are given and their progress.
 */

#include <config.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qad-img.h"

const struct qad_format *
format_of_file (const char *file)
{
  unsigned char magic[4];
  ssize_t r = read_magic (file, magic, false);
  const struct qad_format *f;

  if (r == -1)
    return NULL;
  f = format_of_magic (magic, r);
  if (f == NULL)
    fprintf (stderr, "qad-img: %s: not a QED, add-cow or QDB file\n", file);
  return f;
}

int
parse_maintenance_opts (int argc, char **argv, const struct qad_format **fmt,
                        bool *shrink, bool *json)
{
  enum { OPT_FORMAT = 256, OPT_JSON, OPT_SHRINK };
  static const struct option long_options[] = {
    { "format", required_argument, NULL, OPT_FORMAT },
    { "json", no_argument, NULL, OPT_JSON },
    { "shrink", no_argument, NULL, OPT_SHRINK },
    { 0 }
  };
  int c;

  *fmt = NULL;
  *json = false;
  while ((c = getopt_long (argc, argv, "f:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_FORMAT: case 'f':
      *fmt = format_by_name (optarg);
      if (!*fmt)
        return -1;
      break;
    case OPT_JSON: *json = true; break;
    case OPT_SHRINK:
      if (!shrink) {
        fprintf (stderr, "%s: --shrink is an option of resize only\n",
                 argv[0]);
        return -1;
      }
      *shrink = true;
      break;
    default:
      return -1;
    }
  }
  return optind;
}

/* Ended: the last progress line printed reached 100%. */
static bool progress_ended;

void
maintenance_progress (void *opaque, uint64_t done, uint64_t total)
{
  if (!qad_progress)
    return;
  print_progress (opaque, done, total);
  progress_ended = done >= total;
}

void
maintenance_progress_end (void)
{
  if (qad_progress && !progress_ended)
    maintenance_progress (NULL, 1, 1);
}
