/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Error reporting for the format library.  common/ never includes
 * nbdkit headers, so errors go through a replaceable handler: the
 * default prints to stderr (for the CLI and unit tests), the plugin
 * and filters install one that calls nbdkit_error.
 *
 * Convention: a function that fails calls qad_error once with a
 * message naming the file, the field and the value, sets errno, and
 * returns -1 (or NULL).
 */

#ifndef QAD_ERROR_H
#define QAD_ERROR_H

typedef void (*qad_error_handler) (const char *msg);

/* Install a handler; NULL restores the default (stderr). */
extern void qad_set_error_handler (qad_error_handler handler);

/* Report an error.  Preserves errno. */
extern void qad_error (const char *fs, ...)
  __attribute__ ((format (printf, 1, 2)));

#endif /* QAD_ERROR_H */
