/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The dispatcher: "qad-img VERB [--format=F] FILE ...".  The format
 * comes from --format= when given (create needs it unless it is qed),
 * otherwise from the file's first four bytes.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qad-img.h"
#include "qad-limits.h"

static void
usage (FILE *fp)
{
  fprintf (fp,
"usage: qad-img VERB [OPTIONS] FILE ...\n"
"\n"
"Verbs:\n"
"  create [--format=qed|add-cow|qdb] FILE [SIZE] [OPTIONS]\n"
"  info   FILE [--json]\n"
"  check  FILE [--repair] [--json]\n"
"  map    FILE [--json]\n"
"  bitmap FILE.qdb --add|--remove|--clear|--enable|--disable NAME |\n"
"                  --merge SRC --into DST\n"
"  bitmap --connect=SOCKET (the same, and --freeze|--release NAME)\n"
"  info   --connect=SOCKET [--json]\n"
"\n"
"Every verb also accepts, for images from untrusted sources:\n"
"  --backing-policy=follow|inside|refuse  --backing-dir=DIR\n"
"  --max-table-size=SIZE  --max-bitmap-size=SIZE  --max-qdb-size=SIZE\n"
"\n"
"The format is detected from the file (QED, add-cow or QDB) unless\n"
"--format= is given.  See qad-img(1).\n");
}

enum verb { VERB_CREATE, VERB_INFO, VERB_CHECK, VERB_MAP, VERB_BITMAP,
            NR_VERBS };
static const char *const verb_names[NR_VERBS] = {
  "create", "info", "check", "map", "bitmap"
};

/* The implementation of verb V in format F, or NULL. */
static qad_verb
verb_of (const struct qad_format *f, enum verb v)
{
  const qad_verb fns[NR_VERBS] = {
    f->create, f->info, f->check, f->map, f->bitmap
  };
  return fns[v];
}

static bool
name_matches (const struct qad_format *f, const char *name)
{
  const char *p;
  size_t n = strlen (name);

  if (strcmp (f->name, name) == 0)
    return true;
  for (p = f->aliases; p && *p; ) {
    size_t len = strcspn (p, " ");
    if (len == n && strncmp (p, name, n) == 0)
      return true;
    p += len;
    p += strspn (p, " ");
  }
  return false;
}

static const struct qad_format *
format_by_name (const char *name)
{
  size_t i;

  for (i = 0; qad_formats[i]; ++i)
    if (name_matches (qad_formats[i], name))
      return qad_formats[i];
  fprintf (stderr, "qad-img: unknown format: %s\n", name);
  return NULL;
}

static const struct qad_format *
format_by_magic (const char *file)
{
  unsigned char magic[4];
  ssize_t r;
  size_t i;
  int fd;

  fd = open (file, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
    return NULL;
  }
  r = pread (fd, magic, sizeof magic, 0);
  close (fd);
  if (r != sizeof magic) {
    fprintf (stderr,
             "qad-img: %s: file too short to hold a format magic (%zd bytes)\n",
             file, r < 0 ? (ssize_t) 0 : r);
    return NULL;
  }
  for (i = 0; qad_formats[i]; ++i)
    if (memcmp (qad_formats[i]->magic, magic, 4) == 0)
      return qad_formats[i];
  fprintf (stderr,
           "qad-img: %s: not a QED, add-cow or QDB file "
           "(magic %02x %02x %02x %02x)\n",
           file, magic[0], magic[1], magic[2], magic[3]);
  return NULL;
}

/* The options shared by every verb: KEY=VALUE or KEY VALUE. */
static const char *const global_options[] = {
  "--backing-policy", "--backing-dir",
  "--max-table-size", "--max-bitmap-size", "--max-qdb-size", NULL
};

static int
set_global_option (const char *key, const char *value)
{
  unsigned long long v;
  uint64_t *limit = NULL;

  if (strcmp (key, "--backing-policy") == 0) {
    if (qad_backing_policy_parse (value, &tool_backing_policy) == -1) {
      fprintf (stderr, "qad-img: --backing-policy=%s: must be follow, "
               "inside or refuse\n", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "--backing-dir") == 0) {
    tool_backing_dir = value;
    return 0;
  }
  if (strcmp (key, "--max-table-size") == 0)
    limit = &qad_limits.max_table_bytes;
  else if (strcmp (key, "--max-bitmap-size") == 0)
    limit = &qad_limits.max_bitmap_bytes;
  else
    limit = &qad_limits.max_qdb_bytes;
  if (parse_size (key, value, &v) == -1)
    return -1;
  return qad_set_limit (key, value, v > INT64_MAX ? INT64_MAX : (int64_t) v,
                        limit);
}

/* Remove the shared options from argv (from index 2), applying them.
 * Returns the new argc, or -1.
 */
static int
strip_global_options (int argc, char **argv)
{
  int i, j, k;

  for (i = j = 2; i < argc; ++i) {
    const char *value = NULL;

    if (strcmp (argv[i], "--") == 0) {
      while (i < argc)
        argv[j++] = argv[i++];
      break;
    }
    for (k = 0; global_options[k]; ++k) {
      size_t n = strlen (global_options[k]);
      if (strncmp (argv[i], global_options[k], n) != 0)
        continue;
      if (argv[i][n] == '=')
        value = argv[i] + n + 1;
      else if (argv[i][n] == '\0') {
        if (i + 1 >= argc) {
          fprintf (stderr, "qad-img: %s needs a value\n", argv[i]);
          return -1;
        }
        value = argv[++i];
      }
      else
        continue;
      if (set_global_option (global_options[k], value) == -1)
        return -1;
      break;
    }
    if (value == NULL)
      argv[j++] = argv[i];
  }
  argv[j] = NULL;
  return j;
}

int
main (int argc, char **argv)
{
  const struct qad_format *fmt = NULL;
  const char *verb, *file = NULL;
  enum verb v;
  const char *format_name = NULL;
  qad_verb fn;
  int i;

  if (argc < 2) {
    usage (stderr);
    exit (EXIT_FAILURE);
  }
  verb = argv[1];
  if (strcmp (verb, "--help") == 0 || strcmp (verb, "-h") == 0 ||
      strcmp (verb, "help") == 0) {
    usage (stdout);
    exit (EXIT_SUCCESS);
  }
  if (strcmp (verb, "--version") == 0) {
    printf ("qad-img %s\n", PACKAGE_VERSION);
    exit (EXIT_SUCCESS);
  }

  for (v = 0; v < NR_VERBS && strcmp (verb, verb_names[v]) != 0; ++v)
    ;
  if (v == NR_VERBS) {
    fprintf (stderr, "qad-img: unknown verb: %s\n", verb);
    usage (stderr);
    exit (EXIT_FAILURE);
  }

  argc = strip_global_options (argc, argv);
  if (argc == -1)
    exit (EXIT_FAILURE);
  if (tool_backing_dir && tool_backing_policy != QAD_BACKING_INSIDE) {
    fprintf (stderr, "qad-img: --backing-dir only has a meaning with "
             "--backing-policy=inside\n");
    exit (EXIT_FAILURE);
  }

  /* Find --format= (or -f F) and the first non-option argument (the
   * file) without disturbing the verb's own option parsing.
   */
  for (i = 2; i < argc; ++i) {
    if (strncmp (argv[i], "--format=", 9) == 0)
      format_name = argv[i] + 9;
    else if ((strcmp (argv[i], "-f") == 0 ||
              strcmp (argv[i], "--format") == 0) && i + 1 < argc)
      format_name = argv[++i];
    else if (strcmp (argv[i], "--") == 0) {
      if (i + 1 < argc && !file)
        file = argv[i + 1];
      break;
    }
    else if (strncmp (argv[i], "--connect", 9) == 0) {
      /* A live filter's control socket: always QDB, no file. */
      format_name = "qdb";
      if (strcmp (argv[i], "--connect") == 0)
        i++;
    }
    else if (argv[i][0] != '-' && !file)
      file = argv[i];
  }

  if (format_name)
    fmt = format_by_name (format_name);
  else if (v == VERB_CREATE)
    fmt = format_by_name ("qed");
  else if (file)
    fmt = format_by_magic (file);
  else {
    fprintf (stderr, "qad-img %s: missing FILE\n", verb);
    usage (stderr);
    exit (EXIT_FAILURE);
  }
  if (!fmt)
    exit (EXIT_FAILURE);

  fn = verb_of (fmt, v);
  if (!fn) {
    fprintf (stderr, "qad-img: %s: the %s format has no %s verb\n",
             file ? file : "", fmt->name, verb);
    exit (EXIT_FAILURE);
  }
  /* The verb sees argv from the verb name on; --format is stripped by
   * each verb's getopt table (every verb accepts and ignores it).
   */
  return fn (argc - 1, argv + 1);
}
