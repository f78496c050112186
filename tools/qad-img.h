/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img: one command-line tool for QED images, add-cow sidecars and
 * QDB dirty-bitmap files.  Each format supplies a struct qad_format
 * (in its own FORMAT-cmds.c); the dispatcher in qad-img.c picks the
 * format from --format= or from the file's magic and calls the verb.
 *
 * A verb gets argc/argv starting at the verb name (argv[0]), so it can
 * use getopt_long directly, and returns the process exit status.
 */

#ifndef QAD_IMG_H
#define QAD_IMG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "backing-policy.h"

typedef int (*qad_verb) (int argc, char **argv);

struct qad_format {
  const char *name;             /* as given to --format= */
  const char *aliases;          /* space-separated other names, or NULL */
  unsigned char magic[4];       /* first 4 bytes of the file */
  qad_verb create, info, check, map, bitmap;
  qad_verb rebase, amend;       /* rebase.c */
};

extern const struct qad_format qed_format;
extern const struct qad_format addcow_format;
extern const struct qad_format qdb_format;

/* rebase and amend (rebase.c), per format. */
extern int qed_rebase_verb (int argc, char **argv);
extern int qed_amend_verb (int argc, char **argv);
extern int addcow_rebase_verb (int argc, char **argv);
extern int addcow_amend_verb (int argc, char **argv);

/* qad-img compare A B (compare.c): across formats. */
extern int compare_verb (int argc, char **argv);

/* qad-img resize (resize.c) and commit (commit.c): they detect the
 * format themselves and open several files.
 */
extern int resize_verb (int argc, char **argv);
extern int commit_verb (int argc, char **argv);

/* The options of resize and commit: -f FMT (*FMT, else NULL), --json
 * (*JSON; the dispatcher turns --output=json into it) and, when SHRINK
 * is not NULL, --shrink.  Returns optind, or -1 after a message.
 */
extern int parse_maintenance_opts (int argc, char **argv,
                                   const struct qad_format **fmt,
                                   bool *shrink, bool *json);

/* Their progress under -p (print_progress; nothing without -p, and
 * the verbs clear qad_progress under --json, whose stdout carries only
 * the document).  maintenance_progress_end prints 100% unless the last
 * line already did.
 */
extern void maintenance_progress (void *opaque, uint64_t done,
                                  uint64_t total);
extern void maintenance_progress_end (void);

/* The format of FILE from its magic, or NULL after a message. */
extern const struct qad_format *format_of_file (const char *file);

/* The format named NAME (or an alias), or NULL after a message. */
extern const struct qad_format *format_by_name (const char *name);

/* add-cow sidecars with BACKING_SUPPLIED (addcow-cmds.c): the backing
 * is the plugin below the server's add-cow filter, and the recorded
 * name is only a label, never opened.  When H has the bit and its
 * backing would be needed, print one line naming FILE, the bit and the
 * label, saying why VERB cannot go on (WHY), and return -1; else 0.
 * The caller asks only where it would open the backing.
 */
struct addcow_header;
extern int addcow_refuse_supplied (const char *file,
                                   const struct addcow_header *h,
                                   const char *verb, const char *why);

/* QDB files (qdb-cmds.c): open FILE (with the whole-file write lock
 * when LOCK; *FD keeps it) and read the model with its bits; write a
 * model to a new file renamed over FILE.
 */
struct qdb_file;
extern struct qdb_file *tool_open_qdb (const char *file, bool lock, int *fd);
extern int tool_replace_qdb (const char *file, struct qdb_file *qdb,
                             mode_t mode);

/* NULL-terminated list, in formats.c. */
extern const struct qad_format *const qad_formats[];

/* Exit codes shared by every verb (check uses qemu-img's). */
#define EXIT_CHECK_CORRUPT 2
#define EXIT_CHECK_LEAKS 3

/* --force was given (create may replace an existing file). */
extern bool qad_force;

/* -p was given: verbs that can take long show progress on stdout
 * with print_progress (a qed_check_progress_fn).
 */
extern bool qad_progress;
extern void print_progress (void *opaque, uint64_t done, uint64_t total);

/* Read the first four bytes of FILE into MAGIC (zeroes past its end).
 * Returns how many there were, or -1 when FILE cannot be opened (with
 * a message unless QUIET).
 */
extern ssize_t read_magic (const char *file, unsigned char magic[4],
                           bool quiet);

/* The format whose magic MAGIC is (LEN bytes read), or NULL. */
extern const struct qad_format *format_of_magic (const unsigned char magic[4],
                                                 ssize_t len);

/* For create: refuse (with a message, returning -1) when FILE exists,
 * whatever its format, unless FORCE.
 */
extern int refuse_existing (const char *file, bool force);

/* Parse a size as qemu-img does: an optional K/M/G/T/P/E suffix
 * (powers of 1024, also KiB/KB) and a decimal fraction with a suffix
 * ("1.5G"; the result is rounded down to whole bytes).  Returns -1 and
 * prints an error naming WHAT on failure.
 */
extern int parse_size (const char *what, const char *str,
                       unsigned long long *ret);

/* The error handler of common/ in qad-img: "qad-img: MSG". */
extern void qad_img_print_error (const char *msg);

/* A check's problem reporter: OPAQUE points to the bool "--json";
 * messages go to stdout, or to stderr when stdout carries JSON.
 */
extern void print_check_problem (void *opaque, const char *msg);

/* The arguments of the verbs that take [--json] FILE (info, map) and,
 * when REPAIR is not NULL, [--repair] too (check).  The dispatcher has
 * already turned --output=json into --json and -r leaks|all into
 * --repair.  Returns FILE, or NULL after a message (a usage line
 * naming FILE.EXT).
 */
extern const char *parse_file_args (int argc, char **argv, const char *ext,
                                    bool *repair, bool *json);

/* "qad-img check --json", one document for every format: qemu-img
 * check's keys and meanings first (after a repair, corruptions and
 * leaks count what remains, the -fixed keys what was repaired), then
 * the format's own FIELDS (may be NULL; ends at a NULL key).
 */
struct check_field {
  const char *key;
  bool flag;                    /* printed as true/false, not a count */
  uint64_t value;
};
struct check_report {
  const char *filename;
  const char *format;
  uint64_t corruptions, corruptions_fixed;
  uint64_t leaks, leaks_fixed;
  const struct check_field *fields;
};
extern void print_check_json (const struct check_report *r);

/* Where a guest range reads from, through a backing chain of QED and
 * raw files, as qemu-img map reports it (map_resolve).
 */
struct qad_blockdev;
struct map_where {
  uint64_t len;                 /* bytes with the same answer */
  int depth;                    /* 0: the image, 1: its backing, ... */
  bool present, zero, data;
  bool has_offset;
  uint64_t offset;              /* in the file NAME */
  const char *name;             /* the file holding the bytes */
};
extern int map_resolve (struct qad_blockdev *b, uint64_t off, uint64_t max,
                        int depth, struct map_where *w);

/* A data range of human map output, pending a merge; printed as
 * qemu-img map prints it (nothing when LEN is 0).
 */
struct map_human_range {
  uint64_t start, len, offset;
  const char *name;
};
extern void map_print_human_range (const struct map_human_range *r,
                                   const char *image);
#define MAP_HUMAN_HEADER "%-16s%-16s%-16s%s\n", "Offset", "Length", \
    "Mapped to", "File"

/* Options every verb accepts; the dispatcher removes them from argv
 * before the verb parses its own: --backing-policy=, --backing-dir=,
 * --max-table-size=, --max-bitmap-size=, --max-qdb-size= (the limits
 * go straight into qad_limits).
 */
extern enum qad_backing_policy tool_backing_policy;
extern const char *tool_backing_dir;

/* Set up *R for the top image FILE from those options.  Returns 0, or
 * -1 after printing an error.  Free with qad_backing_rules_free.
 */
extern int tool_backing_rules (const char *file, struct qad_backing_rules *r);

/* Minimal JSON output helpers. */
extern void json_string (FILE *fp, const char *s);
extern void json_string_n (FILE *fp, const char *s, size_t n);

#endif /* QAD_IMG_H */
