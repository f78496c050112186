/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* qad-img rebase and amend: rebase.c parses the command line into a
 * struct backing_change; each format applies it (rebase-qed.c,
 * rebase-addcow.c) through its library in common/.
 */

#ifndef QAD_IMG_REBASE_H
#define QAD_IMG_REBASE_H

#include <stdbool.h>

struct backing_change {
  const char *verb;             /* "rebase" or "amend", for messages */
  const char *file;
  bool safe;                    /* rebase without -u: keep the contents */
  const char *backing;          /* new name; "" = none; NULL = unchanged */
  const char *format;           /* -F / backing_fmt=, or NULL */
  const char *image;            /* add-cow image_file=, or NULL */
};

/* For an unsafe change to the backing PATH of FILE, which does not
 * exist: a warning under backing-policy=follow (recorded anyway, as
 * qemu-img rebase -u does), else an error (a missing file cannot be
 * checked against the policy).  0 to go on, -1 after the error.
 */
extern int missing_backing_allowed (const char *file, const char *path);

/* Apply C to a QED image or an add-cow sidecar.  Exit status. */
extern int qed_apply_change (const struct backing_change *c);
extern int addcow_apply_change (const struct backing_change *c);

#endif /* QAD_IMG_REBASE_H */
