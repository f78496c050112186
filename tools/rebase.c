/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The command lines of qad-img rebase and amend, shared by QED and
 * add-cow.  What each -o key means for a format is the format's own
 * business (the table below only says which keys it accepts).
 */

#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "qad-img.h"
#include "rebase.h"

enum { OPT_FORMAT = 256 };

int
missing_backing_allowed (const char *file, const char *path)
{
  if (tool_backing_policy != QAD_BACKING_FOLLOW) {
    fprintf (stderr, "qad-img: %s: the backing file %s does not exist, so "
             "it cannot be checked against backing-policy=%s\n", file, path,
             qad_backing_policy_name (tool_backing_policy));
    return -1;
  }
  fprintf (stderr, "qad-img: warning: %s: the backing file %s does not "
           "exist (recorded anyway)\n", file, path);
  return 0;
}

static int
rebase_verb (int argc, char **argv, int (*apply) (const struct backing_change *))
{
  static const struct option long_options[] = {
    { "format", required_argument, NULL, OPT_FORMAT },
    { "unsafe", no_argument, NULL, 'u' },
    { "backing", required_argument, NULL, 'b' },
    { "backing-format", required_argument, NULL, 'F' },
    { 0 }
  };
  struct backing_change c = { .verb = "rebase", .safe = true };
  int opt;

  while ((opt = getopt_long (argc, argv, "f:ub:F:", long_options,
                             NULL)) != -1) {
    switch (opt) {
    case OPT_FORMAT: case 'f': break;
    case 'u': c.safe = false; break;
    case 'b': c.backing = optarg; break;
    case 'F': c.format = optarg; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1 || c.backing == NULL) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img rebase [-u] [-p] -b BACKING "
             "[-F raw|qed] FILE (-b \"\" removes the backing file)\n");
    return EXIT_FAILURE;
  }
  if (c.backing[0] == '\0' && c.format) {
    fprintf (stderr, "qad-img: rebase: -F %s: there is no backing file "
                     "(-b \"\") to have a format\n", c.format);
    return EXIT_FAILURE;
  }
  c.file = argv[optind];
  return apply (&c);
}

/* Parse "key=value,..." into *C.  KEYS lists what the format records,
 * for the error message.  0, or -1 after an error naming the key.
 */
static int
parse_amend_options (char *list, const char *format, const char *keys,
                     struct backing_change *c)
{
  char *item, *save = NULL;

  for (item = strtok_r (list, ",", &save); item;
       item = strtok_r (NULL, ",", &save)) {
    char *eq = strchr (item, '=');
    const char *key = item, *value = eq ? eq + 1 : NULL;
    size_t klen = eq ? (size_t) (eq - item) : strlen (item);
    const char *p = keys;
    bool known = false;

    while (*p) {
      size_t n = strcspn (p, ",");
      if (n == klen && strncmp (p, key, n) == 0)
        known = true;
      p += n + (p[n] == ',');
    }
    if (!known) {
      fprintf (stderr, "qad-img: amend: %s: -o %.*s: unknown option for "
               "the %s format (it records: %s)\n", c->file ? c->file : "",
               (int) klen, key, format, keys);
      return -1;
    }
    if (value == NULL) {
      fprintf (stderr, "qad-img: amend: -o %s: needs a value "
               "(%s=VALUE)\n", key, key);
      return -1;
    }
    if (strncmp (key, "backing_file", klen) == 0)
      c->backing = value;
    else if (strncmp (key, "backing_fmt", klen) == 0)
      c->format = value;
    else
      c->image = value;
  }
  return 0;
}

static int
amend_verb (int argc, char **argv, const char *format, const char *keys,
            int (*apply) (const struct backing_change *))
{
  static const struct option long_options[] = {
    { "format", required_argument, NULL, OPT_FORMAT },
    { "options", required_argument, NULL, 'o' },
    { 0 }
  };
  struct backing_change c = { .verb = "amend" };
  CLEANUP_FREE char *opts = NULL;
  int opt;

  while ((opt = getopt_long (argc, argv, "f:o:", long_options,
                             NULL)) != -1) {
    switch (opt) {
    case OPT_FORMAT: case 'f': break;
    case 'o':
      /* As qemu-img: several -o add up. */
      {
        char *joined;
        if (asprintf (&joined, "%s%s%s", opts ? opts : "", opts ? "," : "",
                      optarg) == -1) {
          perror ("qad-img: asprintf");
          return EXIT_FAILURE;
        }
        free (opts);
        opts = joined;
      }
      break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1 || opts == NULL) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img amend -o key=value,... FILE "
             "(%s keys: %s)\n", format, keys);
    return EXIT_FAILURE;
  }
  c.file = argv[optind];
  if (parse_amend_options (opts, format, keys, &c) == -1)
    return EXIT_FAILURE;
  if (c.backing == NULL && c.format == NULL && c.image == NULL) {
    fprintf (stderr, "qad-img: amend: %s: nothing to change\n", c.file);
    return EXIT_FAILURE;
  }
  return apply (&c);
}

int
qed_rebase_verb (int argc, char **argv)
{
  return rebase_verb (argc, argv, qed_apply_change);
}

int
addcow_rebase_verb (int argc, char **argv)
{
  return rebase_verb (argc, argv, addcow_apply_change);
}

int
qed_amend_verb (int argc, char **argv)
{
  return amend_verb (argc, argv, "qed", "backing_file,backing_fmt",
                     qed_apply_change);
}

int
addcow_amend_verb (int argc, char **argv)
{
  return amend_verb (argc, argv, "add-cow",
                     "image_file,backing_file,backing_fmt",
                     addcow_apply_change);
}
