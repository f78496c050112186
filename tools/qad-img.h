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
#include <stdio.h>

#include "backing-policy.h"

typedef int (*qad_verb) (int argc, char **argv);

struct qad_format {
  const char *name;             /* as given to --format= */
  const char *aliases;          /* space-separated other names, or NULL */
  unsigned char magic[4];       /* first 4 bytes of the file */
  qad_verb create, info, check, map, bitmap;
};

extern const struct qad_format qed_format;
extern const struct qad_format addcow_format;
extern const struct qad_format qdb_format;

/* NULL-terminated list, in formats.c. */
extern const struct qad_format *const qad_formats[];

/* Exit codes shared by every verb (check uses qemu-img's). */
#define EXIT_CHECK_CORRUPT 2
#define EXIT_CHECK_LEAKS 3

/* Parse a size with an optional K/M/G/T/P/E suffix (powers of 1024).
 * Returns -1 and prints an error naming WHAT on failure.
 */
extern int parse_size (const char *what, const char *str,
                       unsigned long long *ret);

/* A check's problem reporter: OPAQUE points to the bool "--json";
 * messages go to stdout, or to stderr when stdout carries JSON.
 */
extern void print_check_problem (void *opaque, const char *msg);

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
