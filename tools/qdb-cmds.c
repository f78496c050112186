/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img verbs for QDB dirty-bitmap files.  All format knowledge is
 * in common/qdb; this file parses options and prints.
 *
 * Notes on the design.  Every change (create, bitmap, check --repair)
 * builds the complete new file in memory and replaces the old one by
 * the lock-and-replace protocol of common/qdb/qdb-replace.h (written
 * aside, fsync, rename, fsync of the directory, all under the
 * whole-file lock of the old file), which the nbdkit filter follows
 * too: a file being served is refused, and so is a server that starts
 * meanwhile.
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

#include "cleanup.h"
#include "qad-img.h"
#include "lsb-bits.h"
#include "qdb-control.h"
#include "image-lock.h"
#include "qdb-ops.h"
#include "qdb-replace.h"
#include "qdb.h"

enum {
  OPT_JSON = 256, OPT_SIZE, OPT_BITMAP, OPT_GRAN, OPT_CLUSTER,
  OPT_ADD, OPT_REMOVE, OPT_CLEAR, OPT_ENABLE, OPT_DISABLE, OPT_MERGE,
  OPT_INTO, OPT_DIRTY, OPT_CONNECT, OPT_FREEZE, OPT_RELEASE,
  OPT_DIRTY_ALL,
};

#define CONTROL_TIMEOUT 60      /* seconds to wait for a live reply */

/* Send OPS to a serving filter's control socket.  Prints the error and
 * returns -1, or returns 0 with the decoded bitmaps when INFO is not
 * NULL (free *INFO and *BUF).
 */
static int
control_call (const char *sock, const struct qdb_op *ops, size_t n,
              struct qdb_ctl_bitmap_info **info, size_t *nr, char **buf)
{
  CLEANUP_FREE char *req = NULL;
  char *reply = NULL;
  struct qdb_ctl_bitmap_info *bi;
  const char *msg;
  size_t len, rlen, nbi;
  int r;

  req = qdb_ctl_encode_request (ops, n, &len);
  if (!req || qdb_ctl_call (sock, req, len, CONTROL_TIMEOUT, &reply,
                            &rlen) == -1)
    return -1;
  r = qdb_ctl_decode_reply (reply, rlen, &bi, &nbi, &msg);
  if (r == 1)
    fprintf (stderr, "qad-img: %s: %s\n", sock, msg);
  else if (r == -1)
    fprintf (stderr, "qad-img: %s: malformed reply from the server\n",
             sock);
  if (r != 0 || !info) {
    free (bi);
    free (reply);
    return r == 0 ? 0 : -1;
  }
  *info = bi;
  *nr = nbi;
  *buf = reply;
  return 0;
}

/* qad-img info --connect=SOCKET [--json] */
static int
info_live (const char *sock, bool json)
{
  const struct qdb_op op = { .kind = QDB_OP_INFO };
  struct qdb_ctl_bitmap_info *bi;
  char *buf;
  size_t n, i;

  if (control_call (sock, &op, 1, &bi, &n, &buf) == -1)
    return EXIT_FAILURE;
  if (json) {
    printf ("{\n  \"socket\": ");
    json_string (stdout, sock);
    printf (",\n  \"format\": \"qdb\",\n  \"live\": true,\n"
            "  \"bitmaps\": [");
  }
  else
    printf ("socket:          %s (live)\nbitmaps:         %zu\n", sock, n);
  for (i = 0; i < n; ++i) {
    if (json) {
      printf ("%s\n    { \"name\": ", i ? "," : "");
      json_string (stdout, bi[i].name);
      printf (", \"state\": \"%s\", \"enabled\": %s, \"frozen\": %s, "
              "\"granularity\": %" PRIu64 ", \"disk-size\": %" PRIu64
              ", \"dirty-bytes\": %" PRIu64 " }", bi[i].state,
              strcmp (bi[i].state, "enabled") == 0 ? "true" : "false",
              strcmp (bi[i].state, "frozen") == 0 ? "true" : "false",
              bi[i].granularity, bi[i].disk_size, bi[i].dirty_bytes);
    }
    else
      printf ("  %s: %s, granularity %" PRIu64 ", disk size %" PRIu64
              ", %" PRIu64 " dirty bytes\n", bi[i].name, bi[i].state,
              bi[i].granularity, bi[i].disk_size, bi[i].dirty_bytes);
  }
  if (json)
    printf ("%s]\n}\n", n ? "\n  " : "");
  free (bi);
  free (buf);
  return EXIT_SUCCESS;
}

/* Open FILE and take the write lock (when LOCK) then read it.  Returns
 * the model, *FD stays open (holding the lock) for the caller.
 */
struct qdb_file *
tool_open_qdb (const char *file, bool lock, int *fd)
{
  struct qdb_io io;
  struct qdb_file *qdb;

  if (lock)
    *fd = qdb_open_locked (file, O_RDWR);
  else {
    *fd = open (file, O_RDONLY | O_CLOEXEC);
    if (*fd == -1)
      fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
  }
  if (*fd == -1)
    return NULL;
  if (qdb_io_init_fd (&io, fd, file) == -1) {
    close (*fd);
    *fd = -1;
    return NULL;
  }
  qdb = qdb_read (&io, true);
  if (!qdb) {
    close (*fd);
    *fd = -1;
  }
  return qdb;
}

/* Write QDB to a new file and rename it over FILE (whose lock the
 * caller holds, when it exists).
 */
int
tool_replace_qdb (const char *file, struct qdb_file *qdb, mode_t mode)
{
  int fd, r;

  r = qdb_replace_file (file, qdb, mode, false, &fd);
  if (fd >= 0)
    close (fd);
  return r;
}

/*----------------------------------------------------------------------
 * create
 */

static int
qdb_create (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "size", required_argument, NULL, OPT_SIZE },
    { "bitmap", required_argument, NULL, OPT_BITMAP },
    { "granularity", required_argument, NULL, OPT_GRAN },
    { "cluster-size", required_argument, NULL, OPT_CLUSTER },
    { 0 }
  };
  unsigned long long size = 0, gran = QDB_DEFAULT_GRANULARITY;
  unsigned long long csize = 1ULL << QDB_DEFAULT_CLUSTER_BITS;
  bool have_size = false;
  const char *bitmaps[64];
  size_t nr_bitmaps = 0, i;
  const char *file;
  struct qdb_file *qdb;
  struct stat st;
  int c, r, oldfd = -1;

  while ((c = getopt_long (argc, argv, "g:b:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_SIZE:
      if (parse_size ("--size", optarg, &size) == -1)
        return EXIT_FAILURE;
      have_size = true;
      break;
    case OPT_BITMAP: case 'b':
      if (nr_bitmaps >= 64) {
        fprintf (stderr, "qad-img: too many --bitmap options\n");
        return EXIT_FAILURE;
      }
      bitmaps[nr_bitmaps++] = optarg;
      break;
    case OPT_GRAN: case 'g':
      if (parse_size ("--granularity", optarg, &gran) == -1)
        return EXIT_FAILURE;
      break;
    case OPT_CLUSTER:
      if (parse_size ("--cluster-size", optarg, &csize) == -1)
        return EXIT_FAILURE;
      break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind < argc - 2 || optind >= argc) {
  usage:
    fprintf (stderr, "qad-img: usage: qad-img create --format=qdb FILE.qdb "
             "--size=SIZE [--bitmap=NAME]... [-g GRANULARITY] "
             "[--cluster-size=N]\n");
    return EXIT_FAILURE;
  }
  file = argv[optind];
  if (optind == argc - 2) {
    if (parse_size ("size", argv[optind + 1], &size) == -1)
      return EXIT_FAILURE;
    have_size = true;
  }
  if (!have_size)
    goto usage;
  if (csize < 512 || (csize & (csize - 1)) || csize > (1ULL << 21)) {
    fprintf (stderr, "qad-img: --cluster-size %llu: must be a power of 2 "
             "from 512 to 2M\n", csize);
    return EXIT_FAILURE;
  }
  if (nr_bitmaps == 0)
    bitmaps[nr_bitmaps++] = "bitmap0";

  qdb = qdb_new (file, __builtin_ctzll (csize));
  if (!qdb)
    return EXIT_FAILURE;
  for (i = 0; i < nr_bitmaps; ++i)
    if (qdb_add_bitmap (qdb, bitmaps[i], gran, size,
                        QDB_FLAG_ENABLED) == -1) {
      qdb_free (qdb);
      return EXIT_FAILURE;
    }
  /* Replacing an existing file: refuse when it is being served. */
  if (stat (file, &st) == 0) {
    oldfd = open (file, O_RDWR | O_CLOEXEC);
    if (oldfd >= 0 && qad_lock_whole_file (oldfd, file, QDB_LOCK_WHAT) == -1) {
      close (oldfd);
      qdb_free (qdb);
      return EXIT_FAILURE;
    }
  }
  r = tool_replace_qdb (file, qdb, 0644);
  if (oldfd >= 0)
    close (oldfd);
  qdb_free (qdb);
  if (r == -1)
    return EXIT_FAILURE;
  return EXIT_SUCCESS;
}

/*----------------------------------------------------------------------
 * info and check
 */

static int
qdb_info (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "connect", required_argument, NULL, OPT_CONNECT },
    { 0 }
  };
  bool json = false;
  const char *sock = NULL;
  struct qdb_file *qdb;
  size_t i;
  int c, fd;

  while ((c = getopt_long (argc, argv, "", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_JSON: json = true; break;
    case OPT_CONNECT: sock = optarg; break;
    default: return EXIT_FAILURE;
    }
  }
  if (sock && optind == argc)
    return info_live (sock, json);
  if (sock || optind != argc - 1) {
    fprintf (stderr, "qad-img: usage: qad-img info FILE.qdb [--json] | "
             "qad-img info --connect=SOCKET [--json]\n");
    return EXIT_FAILURE;
  }
  qdb = tool_open_qdb (argv[optind], false, &fd);
  if (!qdb)
    return EXIT_FAILURE;

  if (json) {
    printf ("{\n  \"filename\": ");
    json_string (stdout, argv[optind]);
    printf (",\n  \"format\": \"qdb\",\n  \"version\": %d,\n"
            "  \"cluster-size\": %" PRIu32 ",\n"
            "  \"incompatible-features\": %" PRIu64 ",\n"
            "  \"compatible-features\": %" PRIu64 ",\n"
            "  \"autoclear-features\": %" PRIu64 ",\n"
            "  \"file-size\": %" PRIu64 ",\n"
            "  \"leaked-clusters\": %" PRIu64 ",\n"
            "  \"bitmaps\": [",
            QDB_VERSION, qdb->cluster_size, qdb->incompat, qdb->compat,
            qdb->autoclear, qdb->file_size, qdb->leaked_clusters);
    for (i = 0; i < qdb->nr_bitmaps; ++i) {
      const struct qdb_bitmap *bm = &qdb->bitmaps[i];
      printf ("%s\n    { \"name\": ", i ? "," : "");
      json_string (stdout, bm->name);
      printf (", \"enabled\": %s, \"in-use\": %s, \"granularity\": %" PRIu64
              ", \"disk-size\": %" PRIu64 ", \"dirty-granules\": %" PRIu64
              ", \"dirty-bytes\": %" PRIu64 " }",
              bm->flags & QDB_FLAG_ENABLED ? "true" : "false",
              bm->flags & QDB_FLAG_IN_USE ? "true" : "false",
              bm->granularity, bm->disk_size, qdb_dirty_granules (bm),
              qdb_dirty_bytes (bm));
    }
    printf ("%s]\n}\n", qdb->nr_bitmaps ? "\n  " : "");
  }
  else {
    printf ("file:            %s\n"
            "format:          qdb (version %d)\n"
            "cluster size:    %" PRIu32 "\n"
            "features:        incompatible 0x%" PRIx64 ", compatible 0x%"
            PRIx64 ", autoclear 0x%" PRIx64 "\n"
            "file size:       %" PRIu64 "\n"
            "leaked clusters: %" PRIu64 "\n"
            "bitmaps:         %zu\n",
            argv[optind], QDB_VERSION, qdb->cluster_size, qdb->incompat,
            qdb->compat, qdb->autoclear, qdb->file_size,
            qdb->leaked_clusters, qdb->nr_bitmaps);
    for (i = 0; i < qdb->nr_bitmaps; ++i) {
      const struct qdb_bitmap *bm = &qdb->bitmaps[i];
      printf ("  %s: %s%s, granularity %" PRIu64 ", disk size %" PRIu64
              ", %" PRIu64 " dirty granules, %" PRIu64 " dirty bytes\n",
              bm->name, bm->flags & QDB_FLAG_ENABLED ? "enabled" : "disabled",
              bm->flags & QDB_FLAG_IN_USE ? " IN USE (inconsistent)" : "",
              bm->granularity, bm->disk_size, qdb_dirty_granules (bm),
              qdb_dirty_bytes (bm));
    }
  }
  qdb_free (qdb);
  close (fd);
  return EXIT_SUCCESS;
}

static int
qdb_check (int argc, char **argv)
{
  const char *file;
  bool json, repair, repaired;
  struct qdb_file *qdb;
  uint64_t leaks;
  struct stat st;
  int fd, r = EXIT_SUCCESS;

  file = parse_file_args (argc, argv, "qdb", &repair, &json);
  if (file == NULL)
    return EXIT_FAILURE;
  qdb = tool_open_qdb (file, repair, &fd);
  if (!qdb) {
    /* The refusal, already reported, is the one corruption. */
    if (json)
      print_check_json (&(struct check_report) {
          file, "qdb", 1, 0, 0, 0, NULL });
    return EXIT_CHECK_CORRUPT;
  }
  leaks = qdb->leaked_clusters;
  /* A repair writes the file, and every writer clears unknown
   * autoclear bits (qdb_write does), leaks or not.
   */
  if (repair && (leaks > 0 || (qdb->autoclear & ~QDB_AUTOCLEAR_KNOWN))) {
    if (fstat (fd, &st) == -1 ||
        tool_replace_qdb (file, qdb, st.st_mode & 07777) == -1)
      r = EXIT_FAILURE;
    else
      fprintf (stderr, "qad-img: %s: rewrote the file, %" PRIu64
               " leaked clusters reclaimed\n", file, leaks);
  }
  else if (leaks > 0)
    r = EXIT_CHECK_LEAKS;
  repaired = repair && leaks && r == 0;
  if (json) {
    const struct check_field fields[] = {
      { "repaired", true, repaired },
      { 0 }
    };
    const struct check_report report = {
      file, "qdb", 0, 0,
      repaired ? 0 : leaks, repaired ? leaks : 0, fields
    };
    print_check_json (&report);
  }
  else
    printf ("%s: no errors, %" PRIu64 " leaked clusters%s\n", file,
            leaks, repaired ? " (repaired)" : "");
  qdb_free (qdb);
  close (fd);
  return r;
}

/*----------------------------------------------------------------------
 * map
 */

static int
qdb_map (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "bitmap", required_argument, NULL, OPT_BITMAP },
    { "dirty", no_argument, NULL, OPT_DIRTY },
    { 0 }
  };
  bool json = false, dirty_only = false, first = true;
  const char *name = NULL;
  struct qdb_file *qdb;
  struct qdb_bitmap *bm;
  uint64_t n;
  int c, fd;

  while ((c = getopt_long (argc, argv, "b:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_JSON: json = true; break;
    case OPT_BITMAP: case 'b': name = optarg; break;
    case OPT_DIRTY: dirty_only = true; break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - 1) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img map FILE.qdb [--bitmap=NAME] [--dirty] "
             "[--json]\n");
    return EXIT_FAILURE;
  }
  qdb = tool_open_qdb (argv[optind], false, &fd);
  if (!qdb)
    return EXIT_FAILURE;
  if (name)
    bm = qdb_find_bitmap (qdb, name);
  else if (qdb->nr_bitmaps == 1)
    bm = &qdb->bitmaps[0];
  else {
    fprintf (stderr, "qad-img: %s: %zu bitmaps: choose one with "
             "--bitmap=NAME\n", argv[optind], qdb->nr_bitmaps);
    qdb_free (qdb);
    close (fd);
    return EXIT_FAILURE;
  }
  if (!bm) {
    fprintf (stderr, "qad-img: %s: no bitmap named \"%s\"\n",
             argv[optind], name);
    qdb_free (qdb);
    close (fd);
    return EXIT_FAILURE;
  }
  if (bm->flags & QDB_FLAG_IN_USE)
    fprintf (stderr, "qad-img: %s: warning: bitmap \"%s\" is IN_USE "
             "(inconsistent): it may miss changes\n", argv[optind], bm->name);

  if (json)
    printf ("[");
  for (n = 0; n < bm->nr_granules; ) {
    uint64_t run = bits_run (bm->bits, n, bm->nr_granules, NULL);
    bool dirty = bit_test (bm->bits, n);
    uint64_t start = n * bm->granularity;
    uint64_t end = (n + run) * bm->granularity;

    if (end > bm->disk_size)
      end = bm->disk_size;
    if (!dirty_only || dirty) {
      if (json)
        printf ("%s\n  { \"start\": %" PRIu64 ", \"length\": %" PRIu64
                ", \"dirty\": %s }", first ? "" : ",", start, end - start,
                dirty ? "true" : "false");
      else
        printf ("%" PRIu64 " %" PRIu64 " %s\n", start, end - start,
                dirty ? "dirty" : "clean");
      first = false;
    }
    n += run;
  }
  if (json)
    printf ("%s]\n", first ? "" : "\n");
  qdb_free (qdb);
  close (fd);
  return EXIT_SUCCESS;
}

/*----------------------------------------------------------------------
 * bitmap
 */

static int
qdb_bitmap_verb (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "add", required_argument, NULL, OPT_ADD },
    { "remove", required_argument, NULL, OPT_REMOVE },
    { "clear", required_argument, NULL, OPT_CLEAR },
    { QDB_OP_DIRTY_ALL_WORD, required_argument, NULL, OPT_DIRTY_ALL },
    { "enable", required_argument, NULL, OPT_ENABLE },
    { "disable", required_argument, NULL, OPT_DISABLE },
    { "merge", required_argument, NULL, OPT_MERGE },
    { "into", required_argument, NULL, OPT_INTO },
    { "granularity", required_argument, NULL, OPT_GRAN },
    { "size", required_argument, NULL, OPT_SIZE },
    { "connect", required_argument, NULL, OPT_CONNECT },
    { "freeze", required_argument, NULL, OPT_FREEZE },
    { "release", required_argument, NULL, OPT_RELEASE },
    { 0 }
  };
  static const enum qdb_op_kind kinds[] = {
    [OPT_ADD - OPT_ADD] = QDB_OP_ADD, [OPT_REMOVE - OPT_ADD] = QDB_OP_REMOVE,
    [OPT_CLEAR - OPT_ADD] = QDB_OP_CLEAR,
    [OPT_ENABLE - OPT_ADD] = QDB_OP_ENABLE,
    [OPT_DISABLE - OPT_ADD] = QDB_OP_DISABLE,
    [OPT_MERGE - OPT_ADD] = QDB_OP_MERGE,
  };
  struct qdb_op ops[QDB_CTL_MAX_OPS];
  const char *sock = NULL;
  size_t nr_ops = 0, i;
  unsigned long long gran = QDB_DEFAULT_GRANULARITY, size = 0;
  bool have_size = false;
  const char *file;
  struct qdb_file *qdb;
  struct stat st;
  int c, fd, r = EXIT_SUCCESS;

  while ((c = getopt_long (argc, argv, "g:", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_ADD: case OPT_REMOVE: case OPT_CLEAR: case OPT_ENABLE:
    case OPT_DISABLE: case OPT_MERGE: case OPT_FREEZE: case OPT_RELEASE:
    case OPT_DIRTY_ALL:
      if (nr_ops >= QDB_CTL_MAX_OPS) {
        fprintf (stderr, "qad-img: too many operations\n");
        return EXIT_FAILURE;
      }
      ops[nr_ops++] = (struct qdb_op) {
        c == OPT_FREEZE ? QDB_OP_FREEZE : c == OPT_RELEASE ? QDB_OP_RELEASE
        : c == OPT_DIRTY_ALL ? QDB_OP_CLEAR : kinds[c - OPT_ADD],
        optarg, NULL, gran, c == OPT_DIRTY_ALL
      };
      break;
    case OPT_CONNECT:
      sock = optarg;
      break;
    case OPT_INTO:
      if (nr_ops == 0 || ops[nr_ops - 1].kind != QDB_OP_MERGE) {
        fprintf (stderr, "qad-img: --into must follow --merge SRC\n");
        return EXIT_FAILURE;
      }
      ops[nr_ops - 1].into = optarg;
      break;
    case OPT_GRAN: case 'g':
      /* "--add NAME -g G" sets NAME's granularity; a -g before any
       * --add sets the default for the following ones.
       */
      {
        unsigned long long g;
        if (parse_size ("--granularity", optarg, &g) == -1)
          return EXIT_FAILURE;
        if (nr_ops > 0 && ops[nr_ops - 1].kind == QDB_OP_ADD)
          ops[nr_ops - 1].granularity = g;
        else
          gran = g;
      }
      break;
    case OPT_SIZE:
      if (parse_size ("--size", optarg, &size) == -1)
        return EXIT_FAILURE;
      have_size = true;
      break;
    default: return EXIT_FAILURE;
    }
  }
  if (optind != argc - (sock ? 0 : 1) || nr_ops == 0) {
    fprintf (stderr, "qad-img: usage: "
             "qad-img bitmap FILE.qdb|--connect=SOCKET "
             "--add NAME [-g GRAN] | --remove NAME | --clear NAME | "
             "--dirty-all NAME | --enable NAME | --disable NAME | --merge SRC --into DST | "
             "--freeze NAME | --release NAME (live only)\n");
    return EXIT_FAILURE;
  }
  for (i = 0; i < nr_ops; ++i)
    if (ops[i].kind == QDB_OP_MERGE && !ops[i].into) {
      fprintf (stderr, "qad-img: --merge %s needs --into DST\n", ops[i].name);
      return EXIT_FAILURE;
    }
  if (sock) {
    if (have_size) {
      fprintf (stderr, "qad-img: --size cannot be used with --connect (new "
               "bitmaps cover the served disk)\n");
      return EXIT_FAILURE;
    }
    return control_call (sock, ops, nr_ops, NULL, NULL, NULL) == -1
      ? EXIT_FAILURE : EXIT_SUCCESS;
  }
  file = argv[optind];
  qdb = tool_open_qdb (file, true, &fd);
  if (!qdb)
    return EXIT_FAILURE;

  for (i = 0; i < nr_ops && r == EXIT_SUCCESS; ++i)
    if (qdb_op_apply (qdb, &ops[i], have_size ? size : 0) == -1)
      r = EXIT_FAILURE;
  if (r == EXIT_SUCCESS &&
      (fstat (fd, &st) == -1 ||
       tool_replace_qdb (file, qdb, st.st_mode & 07777) == -1))
    r = EXIT_FAILURE;
  qdb_free (qdb);
  close (fd);                   /* releases the lock */
  return r;
}

const struct qad_format qdb_format = {
  .name = "qdb",
  .magic = { 'Q', 'D', 'B', '\0' },
  .create = qdb_create,
  .info = qdb_info,
  .check = qdb_check,
  .map = qdb_map,
  .bitmap = qdb_bitmap_verb,
};
