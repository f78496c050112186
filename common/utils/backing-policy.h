/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What an image may make us open: the backing-file policy shared by
 * the QED plugin, the add-cow filter and qad-img.
 *
 *   follow  open whatever the image names (QEMU's behaviour, default);
 *   inside  a backing file must be, once symbolic links and ".." are
 *           resolved, inside the top image's directory or inside the
 *           configured backing directory; URIs are refused;
 *   refuse  an image that names a backing file is refused.
 *
 * The check is made on the descriptor that was opened, never on a
 * name looked up earlier, so a symbolic link swapped between a check
 * and the open cannot redirect it (see backing-policy.c).
 */

#ifndef QAD_BACKING_POLICY_H
#define QAD_BACKING_POLICY_H

#include <stdbool.h>

enum qad_backing_policy {
  QAD_BACKING_FOLLOW = 0,
  QAD_BACKING_INSIDE,
  QAD_BACKING_REFUSE,
};

/* The rules for one top image.  A NULL rules pointer means follow. */
struct qad_backing_rules {
  enum qad_backing_policy policy;
  char *top_dir;                /* canonical directory of the top image */
  char *backing_dir;            /* canonical backing-dir=, or NULL */
  const char *param;            /* the parameter named in refusals;
                                   NULL: "backing-policy" */
};

/* "follow", "inside", "refuse" -> *P.  -1 (errno EINVAL) otherwise,
 * with no message: the caller names its own parameter.
 */
extern int qad_backing_policy_parse (const char *str,
                                     enum qad_backing_policy *p);
extern const char *qad_backing_policy_name (enum qad_backing_policy p);

/* Set up R for the top image TOP_IMAGE (any path to it) with POLICY
 * and an optional BACKING_DIR (must exist: it is canonicalised now,
 * before any chdir).  Returns 0 or -1 after qad_error.
 */
extern int qad_backing_rules_init (struct qad_backing_rules *r,
                                   enum qad_backing_policy policy,
                                   const char *backing_dir,
                                   const char *top_image);
extern void qad_backing_rules_free (struct qad_backing_rules *r);
#define CLEANUP_BACKING_RULES \
  __attribute__ ((cleanup (qad_backing_rules_free)))

/* May IMAGE name a backing NAME at all?  Refused under "refuse", and
 * for URIs (IS_URI) under "inside".  0, or -1 (errno EPERM) after one
 * qad_error line naming the image, the name and the rule.
 */
extern int qad_backing_check_name (const struct qad_backing_rules *r,
                                   const char *image, const char *name,
                                   bool is_uri);

/* Open PATH (the resolved form of NAME, recorded in IMAGE) read-only
 * and check the opened descriptor against R.  Returns the descriptor
 * (O_CLOEXEC), or -1 after one qad_error line: errno EPERM when the
 * policy refused it, the open's errno otherwise.
 */
extern int qad_backing_open (const struct qad_backing_rules *r,
                             const char *image, const char *name,
                             const char *path);

/* Without opening anything: does PATH (after resolving symbolic links
 * as they are now) lie outside the top image's directory (R's top_dir,
 * or when R has none the directory of IMAGE)?  For reports (qad-img
 * info) only, never for decisions.
 */
extern bool qad_backing_leaves (const struct qad_backing_rules *r,
                                const char *image, const char *path);

/* The check itself, exposed for the unit test: is the canonical
 * absolute path P equal to or below directory DIR?
 */
extern bool qad_path_is_below (const char *p, const char *dir);

/* The fallback used when /proc/self/fd cannot name a descriptor:
 * open PATH beneath the allowed directories with openat2
 * (RESOLVE_BENEATH), so the kernel refuses any escape.  Exposed for
 * the unit test.  -1 with errno ENOSYS when openat2 is unavailable.
 */
extern int qad_backing_open_beneath (const struct qad_backing_rules *r,
                                     const char *path);

#endif /* QAD_BACKING_POLICY_H */
