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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qad-error.h"
#include "qad-img.h"
#include "qad-limits.h"

/* After a mistake: two lines on stderr, each starting "qad-img:" as
 * every error does.  The full text is for --help, on stdout.
 */
static void
usage_error (void)
{
  fprintf (stderr,
           "qad-img: usage: qad-img VERB [OPTIONS] FILE ...\n"
           "qad-img: 'qad-img --help' lists the verbs and options\n");
}

static void
usage (void)
{
  printf (
"usage: qad-img VERB [OPTIONS] FILE ...\n"
"\n"
"Verbs:\n"
"  create [--format=qed|add-cow|qdb] [--force] FILE [SIZE] [OPTIONS]\n"
"  info   FILE [--json]\n"
"  check  FILE [--repair] [--json]\n"
"  map    FILE [--json]\n"
"  bitmap FILE.qdb --add|--remove|--clear|--enable|--disable NAME |\n"
"                  --merge SRC --into DST\n"
"  bitmap --connect=SOCKET (the same, and --freeze|--release NAME)\n"
"  info   --connect=SOCKET [--json]\n"
"  compare [-f FMT] [-F FMT] [-s] A B\n"
"  rebase [-u] [-p] -b BACKING [-F raw|qed] FILE\n"
"  amend  -o key=value,... FILE\n"
"  resize [--shrink] [-p] FILE [+|-]SIZE\n"
"  commit [-p] FILE\n"
"\n"
"Every verb also accepts, for images from untrusted sources:\n"
"  --backing-policy=follow|inside|refuse  --backing-dir=DIR\n"
"  --max-table-size=SIZE  --max-bitmap-size=SIZE  --max-qdb-size=SIZE\n"
"\n"
"The format is detected from the file (QED, add-cow or QDB) unless\n"
"--format= (-f) is given.  Every verb takes -q, --output=human|json\n"
"(--json) and --help; read-only verbs take -U.  See qad-img(1).\n");
}

enum verb { VERB_CREATE, VERB_INFO, VERB_CHECK, VERB_MAP, VERB_BITMAP,
            VERB_COMPARE, VERB_REBASE, VERB_AMEND, VERB_RESIZE, VERB_COMMIT,
            NR_VERBS };
static const char *const verb_names[NR_VERBS] = {
  "create", "info", "check", "map", "bitmap", "compare", "rebase", "amend",
  "resize", "commit"
};

/* The implementation of verb V in format F, or NULL. */
static qad_verb
verb_of (const struct qad_format *f, enum verb v)
{
  /* compare, resize and commit: dispatched before this. */
  const qad_verb fns[NR_VERBS] = {
    f->create, f->info, f->check, f->map, f->bitmap, NULL, f->rebase,
    f->amend, NULL, NULL
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

const struct qad_format *
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
  const struct qad_format *f;
  ssize_t r;

  r = read_magic (file, magic, false);
  if (r == -1)
    return NULL;
  if (r != 4) {
    fprintf (stderr,
             "qad-img: %s: file too short to hold a format magic (%zd bytes)\n",
             file, r);
    return NULL;
  }
  f = format_of_magic (magic, r);
  if (f == NULL)
    fprintf (stderr,
             "qad-img: %s: not a QED, add-cow or QDB file "
             "(magic %02x %02x %02x %02x)\n",
             file, magic[0], magic[1], magic[2], magic[3]);
  return f;
}

/* Per-verb help, printed by "qad-img VERB --help" (exit 0). */
static const char *const verb_help[NR_VERBS] = {
  /* create */
  "usage: qad-img create [-f qed|add-cow|qdb] [--force] [-q] FILE [SIZE] "
  "[OPTIONS]\n"
  "         [-o cluster_size=N,table_size=N,backing_file=F,backing_fmt=F]\n"
  "\n"
  "Create FILE.  An existing file (of any format) is never replaced\n"
  "unless --force is given.  SIZE takes K, M, G, T, P, E suffixes\n"
  "(powers of 1024) and fractions (1.5G).\n"
  "  qed:     [-b BACKING [-F raw|qed]] [--cluster-size=N] [--table-size=N]\n"
  "  add-cow: --image=DISK.raw [-b BACKING [-F raw|qed]] [--cluster-size=N]\n"
  "  qdb:     [--bitmap=NAME]... [-g GRANULARITY] [--cluster-size=N]\n",
  /* info */
  "usage: qad-img info [-f FMT] [-U] [--output=human|json] FILE\n"
  "\n"
  "Show what FILE's header records.\n",
  /* check */
  "usage: qad-img check [-f FMT] [-U] [-r leaks|all | --repair] [-q] [-p]\n"
  "                     [--output=human|json] FILE\n"
  "\n"
  "Check FILE's consistency; -r repairs.  Exit status as qemu-img check:\n"
  "0 clean, 1 the check could not run, 2 corruption, 3 leaks only.\n",
  /* map */
  "usage: qad-img map [-f FMT] [-U] [--output=human|json] FILE\n"
  "\n"
  "Show where each range of the disk reads from.\n",
  /* bitmap */
  "usage: qad-img bitmap FILE.qdb --add|--remove|--clear|--enable|--disable "
  "NAME\n"
  "       qad-img bitmap FILE.qdb --merge SRC --into DST\n"
  "\n"
  "Change the bitmaps of a QDB file (offline; refused while it is served).\n",
  /* compare */
  "usage: qad-img compare [-f FMT] [-F FMT] [-s] [-p] [-q] A B\n"
  "\n"
  "Do disks A and B (QED, add-cow or raw; -f/-F force a format) read the\n"
  "same?  As qemu-img compare: exit 0 identical, 1 different (the first\n"
  "differing offset is printed), 2 a file could not be opened, 3 a read\n"
  "failed.  Without -s a larger disk must read zeroes past the smaller\n"
  "one's end.\n",
  /* rebase */
  "usage: qad-img rebase [-f qed|add-cow] [-u] [-p] [-q] -b BACKING "
  "[-F raw|qed] FILE\n"
  "\n"
  "Make FILE use BACKING (a name relative to FILE's directory; \"\" for\n"
  "none).  Without -u the disk keeps its contents: clusters FILE does not\n"
  "hold where the old and new backing differ are copied into FILE first.\n"
  "With -u only the recorded name and format change.  Refused while FILE\n"
  "is in use.\n",
  /* amend */
  "usage: qad-img amend [-f qed|add-cow] [-q] -o key=value,... FILE\n"
  "\n"
  "Change what FILE's header records, nothing else (no data is copied).\n"
  "  qed:     backing_file=NAME, backing_fmt=raw|qed\n"
  "  add-cow: image_file=NAME, backing_file=NAME, backing_fmt=raw|qed\n"
  "backing_file= (empty) removes the backing file.\n",
  /* resize */
  "usage: qad-img resize [-f FMT] [--shrink] [-p] [-q] [--output=json] "
  "FILE [+|-]SIZE\n"
  "\n"
  "Grow (or with --shrink, shrink) a QED image, an add-cow file with its\n"
  "raw image, or every bitmap of a QDB file.  A shrink is refused while\n"
  "anything written lies past the new end.  The new area reads zeroes.\n"
  "-p shows progress; --output=json (--json) reports filename, format,\n"
  "old-virtual-size and virtual-size.\n",
  /* commit */
  "usage: qad-img commit [-f FMT] [-p] [-q] [--output=json] FILE\n"
  "\n"
  "Write what the QED image or add-cow file FILE holds into its backing\n"
  "file (raw or QED, writable), then empty FILE, as qemu-img commit.\n"
  "--output=json (--json) reports filename, format, backing-filename,\n"
  "backing-filename-format, virtual-size and bytes-committed.\n",
};

/* Options every verb understands, taken out of argv here so that the
 * verbs' own getopt tables stay as they are.  Returns the new argc, or
 * -1 after an error message.
 */
struct common_opts {
  bool force;                   /* --force (create) */
  bool quiet;                   /* -q, --quiet */
  bool help;                    /* -h, --help after the verb */
  bool json;                    /* --output=json */
};

static bool
is_opt (const char *arg, const char *s1, const char *s2)
{
  return strcmp (arg, s1) == 0 || (s2 && strcmp (arg, s2) == 0);
}

/* qemu-img's "-o key=value,..." for create, as the verbs' long
 * options.  Returns the number of arguments written to OUT (room for
 * as many as VALUE has commas plus one), or -1 after an error.
 */
static int
expand_create_options (const char *value, char **out)
{
  static const struct { const char *key, *opt; } map[] = {
    { "cluster_size", "--cluster-size=" },
    { "table_size", "--table-size=" },
    { "backing_file", "--backing=" },
    { "backing_fmt", "--backing-format=" },
  };
  char *copy = strdup (value), *item, *save = NULL;
  int n = 0;
  size_t i;

  if (copy == NULL) {
    perror ("qad-img: strdup");
    return -1;
  }
  for (item = strtok_r (copy, ",", &save); item;
       item = strtok_r (NULL, ",", &save)) {
    const char *eq = strchr (item, '=');
    size_t klen = eq ? (size_t) (eq - item) : strlen (item);

    for (i = 0; i < sizeof map / sizeof map[0]; ++i)
      if (strlen (map[i].key) == klen && strncmp (item, map[i].key, klen) == 0)
        break;
    if (i == sizeof map / sizeof map[0] || eq == NULL) {
      fprintf (stderr, "qad-img: create: -o %s: unknown or incomplete "
               "option (known: cluster_size=, table_size=, backing_file=, "
               "backing_fmt=)\n", item);
      free (copy);
      return -1;
    }
    if (asprintf (&out[n++], "%s%s", map[i].opt, eq + 1) == -1) {
      perror ("qad-img: asprintf");
      free (copy);
      return -1;
    }
  }
  free (copy);
  return n;
}

/* Takes the common options out of ARGV (verb at argv[1]) and writes
 * the rest to OUT, which has room for 2 * ARGC + the commas of every
 * -o value.  Returns the new argc, or -1 after an error message.
 */
static int
take_common_opts (int argc, char **argv, char **out, enum verb v,
                  struct common_opts *o)
{
  int i, j = 2;

  out[0] = argv[0];
  out[1] = argv[1];

  for (i = 2; i < argc; ++i) {
    const char *a = argv[i];
    if (strcmp (a, "--") == 0) {
      while (i < argc)
        out[j++] = argv[i++];
      break;
    }
    if (is_opt (a, "-h", "--help"))
      o->help = true;
    else if (is_opt (a, "-q", "--quiet"))
      o->quiet = true;
    else if (is_opt (a, "-p", "--progress")) {
      if (v != VERB_CHECK && v != VERB_COMPARE && v != VERB_REBASE &&
          v != VERB_COMMIT && v != VERB_RESIZE) {
        fprintf (stderr, "qad-img: %s: -p is for verbs that can take "
                 "long (check, compare, rebase, commit, resize)\n",
                 verb_names[v]);
        return -1;
      }
      qad_progress = true;
    }
    else if (strcmp (a, "--force") == 0) {
      if (v != VERB_CREATE) {
        fprintf (stderr, "qad-img: %s: --force is an option of create "
                 "only\n", verb_names[v]);
        return -1;
      }
      o->force = true;
    }
    else if (is_opt (a, "-U", "--force-share")) {
      /* Read-only verbs never lock, as qemu-img with -U. */
      if (v == VERB_CREATE || v == VERB_BITMAP || v == VERB_REBASE ||
          v == VERB_AMEND || v == VERB_RESIZE || v == VERB_COMMIT) {
        fprintf (stderr, "qad-img: %s: -U (--force-share) is for "
                 "read-only verbs\n", verb_names[v]);
        return -1;
      }
    }
    else if (strncmp (a, "--output=", 9) == 0 ||
             (strcmp (a, "--output") == 0 && i + 1 < argc)) {
      const char *val = a[8] == '=' ? a + 9 : argv[++i];
      if (strcmp (val, "json") == 0)
        o->json = true;
      else if (strcmp (val, "human") == 0)
        o->json = false;
      else {
        fprintf (stderr, "qad-img: --output=%s: must be human or json\n",
                 val);
        return -1;
      }
    }
    else if (v == VERB_CHECK && (strcmp (a, "-r") == 0 ||
                                 strncmp (a, "--repair=", 9) == 0)) {
      const char *val = a[1] == 'r' ? (i + 1 < argc ? argv[++i] : "")
        : a + 9;
      if (strcmp (val, "leaks") != 0 && strcmp (val, "all") != 0) {
        fprintf (stderr, "qad-img: check: -r %s: must be leaks or all\n",
                 val);
        return -1;
      }
      out[j++] = (char *) "--repair";
    }
    else if (v == VERB_CREATE && strncmp (a, "-o", 2) == 0 &&
             (a[2] != '\0' || i + 1 < argc)) {
      int n = expand_create_options (a[2] ? a + 2 : argv[++i], &out[j]);
      if (n == -1)
        return -1;
      j += n;
    }
    else
      out[j++] = argv[i];
  }
  out[j] = NULL;
  return j;
}

/* Verb options given as "-X VALUE" or "--opt VALUE": the value is
 * not the FILE.
 */
static bool
takes_value (const char *arg)
{
  static const char *const opts[] = {
    "-b", "-F", "-g", "--backing", "--backing-format", "--image",
    "--size", "--bitmap", "--granularity", "--cluster-size",
    "--table-size", "-o", NULL
  };
  size_t i;

  for (i = 0; opts[i]; ++i)
    if (strcmp (arg, opts[i]) == 0)
      return true;
  return false;
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

/* Takes --format=F (--format F, -f F, -fF) out of ARGV (verb at
 * argv[1]), so that no verb has to know it, and finds the first
 * argument that is not an option: the file.  *FORMAT_NAME is the last
 * format given, or "qdb" for --connect (a live filter's control
 * socket, no file).  Returns the new argc, or -1 after an error.
 */
static int
take_format (int argc, char **argv, const char **format_name,
             const char **file)
{
  int i, j;

  for (i = j = 2; i < argc; ++i) {
    const char *a = argv[i];

    if (strcmp (a, "--") == 0) {
      if (i + 1 < argc && !*file)
        *file = argv[i + 1];
      while (i < argc)
        argv[j++] = argv[i++];
      break;
    }
    if (strncmp (a, "--format=", 9) == 0) {
      *format_name = a + 9;
      continue;
    }
    if (strncmp (a, "-f", 2) == 0 && a[2] != '\0' && a[2] != '-') {
      *format_name = a + 2;
      continue;
    }
    if (strcmp (a, "-f") == 0 || strcmp (a, "--format") == 0) {
      if (i + 1 >= argc) {
        fprintf (stderr, "qad-img: %s needs a format name\n", a);
        return -1;
      }
      *format_name = argv[++i];
      continue;
    }
    argv[j++] = argv[i];
    if (strncmp (a, "--connect", 9) == 0) {
      *format_name = "qdb";
      if (strcmp (a, "--connect") == 0 && i + 1 < argc)
        argv[j++] = argv[++i];
    }
    else if (takes_value (a) && i + 1 < argc)
      argv[j++] = argv[++i];
    else if (a[0] != '-' && !*file)
      *file = a;
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
  struct common_opts copts = { 0 };
  /* Static: it lives until exit, and LeakSanitizer sees it as reachable. */
  static char **vargv;
  qad_verb fn;
  size_t room;
  int i;

  qad_set_error_handler (qad_img_print_error);

  if (argc < 2) {
    usage_error ();
    exit (EXIT_FAILURE);
  }
  verb = argv[1];
  if (strcmp (verb, "--help") == 0 || strcmp (verb, "-h") == 0 ||
      strcmp (verb, "help") == 0) {
    usage ();
    exit (EXIT_SUCCESS);
  }
  if (strcmp (verb, "--version") == 0 || strcmp (verb, "-V") == 0) {
    printf ("qad-img %s\n", PACKAGE_VERSION);
    exit (EXIT_SUCCESS);
  }

  for (v = 0; v < NR_VERBS && strcmp (verb, verb_names[v]) != 0; ++v)
    ;
  if (v == NR_VERBS) {
    fprintf (stderr, "qad-img: unknown verb: %s\n", verb);
    usage_error ();
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

  /* Room for every argument, the expansion of each -o and a "--json"
   * the verb gets for --output=json.
   */
  room = argc + 2;
  for (i = 0; i < argc; ++i)
    room += strlen (argv[i]);
  vargv = calloc (room, sizeof *vargv);
  if (vargv == NULL) {
    perror ("qad-img: calloc");
    exit (EXIT_FAILURE);
  }
  argc = take_common_opts (argc, argv, vargv, v, &copts);
  argv = vargv;
  if (argc == -1)
    exit (EXIT_FAILURE);
  if (copts.help) {
    fputs (verb_help[v], stdout);
    exit (EXIT_SUCCESS);
  }
  if (copts.json) {
    argv[argc++] = (char *) "--json";
    argv[argc] = NULL;
  }
  qad_force = copts.force;
  if (copts.quiet && freopen ("/dev/null", "w", stdout) == NULL) {
    perror ("qad-img: /dev/null");
    exit (EXIT_FAILURE);
  }

  if (v == VERB_COMPARE) {
    argv[1] = (char *) "qad-img compare";   /* for getopt's messages */
    return compare_verb (argc - 1, argv + 1);
  }
  if (v == VERB_RESIZE || v == VERB_COMMIT) {
    /* Their own format detection: they open several files. */
    if (asprintf (&argv[1], "qad-img %s", verb) == -1) {
      perror ("qad-img: asprintf");
      exit (EXIT_FAILURE);
    }
    return (v == VERB_RESIZE ? resize_verb : commit_verb) (argc - 1,
                                                           argv + 1);
  }

  argc = take_format (argc, argv, &format_name, &file);
  if (argc == -1)
    exit (EXIT_FAILURE);

  if (format_name)
    fmt = format_by_name (format_name);
  else if (v == VERB_CREATE)
    fmt = format_by_name ("qed");
  else if (file)
    fmt = format_by_magic (file);
  else {
    fprintf (stderr, "qad-img: %s: missing FILE\n", verb);
    usage_error ();
    exit (EXIT_FAILURE);
  }
  if (!fmt)
    exit (EXIT_FAILURE);
  if (v == VERB_CREATE && file && refuse_existing (file, copts.force) == -1)
    exit (EXIT_FAILURE);

  fn = verb_of (fmt, v);
  if (!fn) {
    fprintf (stderr, "qad-img: %s: the %s format has no %s verb\n",
             file ? file : "", fmt->name, verb);
    exit (EXIT_FAILURE);
  }
  /* The verb sees argv from the verb name on, without --format;
   * getopt's messages then start with "qad-img VERB:".
   */
  if (asprintf (&argv[1], "qad-img %s", verb) == -1) {
    perror ("qad-img: asprintf");
    exit (EXIT_FAILURE);
  }
  return fn (argc - 1, argv + 1);
}
