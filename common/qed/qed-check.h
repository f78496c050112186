/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The QED consistency check and repair. */

#ifndef QAD_QED_CHECK_H
#define QAD_QED_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "check-report.h"
#include "qed-image.h"

struct qed_check_result {
  uint64_t corruptions;         /* invalid or doubly referenced entries */
  uint64_t corruptions_fixed;   /* entries cleared by repair */
  uint64_t leaks;               /* clusters no table references */
  uint64_t leaks_fixed;         /* reclaimed: moved down or truncated */
  uint64_t leaks_punched;       /* left in place, space punched */
  uint64_t l2_tables;
  uint64_t data_clusters;
  uint64_t zero_clusters;
  uint64_t file_clusters;       /* whole clusters in the file */
  uint64_t image_end_offset;    /* file size after the check */
  bool need_check;              /* NEED_CHECK was set */
  bool need_check_cleared;
};

/* What a check leaves: the corruptions it found and did not fix (a
 * check without repair fixes none).  The one rule for "is the image
 * fit for writing now", used by the repair itself (NEED_CHECK is
 * cleared only at 0), the plugin's lazy repair at the first writable
 * connection, and qad-img check.
 */
static inline uint64_t
qed_check_corruptions_left (const struct qed_check_result *res)
{
  return res->corruptions - res->corruptions_fixed;
}

/* The leaked clusters a check leaves (counted by qemu-img check as
 * leaks): those it could neither move nor truncate away.
 */
static inline uint64_t
qed_check_leaks_left (const struct qed_check_result *res)
{
  return res->leaks - res->leaks_fixed;
}

/* Check IMG; with REPAIR (image open read-write, no other I/O in
 * flight) clear invalid and doubly referenced entries (their data is
 * lost and reported), reclaim leaked clusters by moving data clusters
 * down into them and truncating the file, punch the leaks that remain,
 * and clear NEED_CHECK when nothing is left unfixed.  Returns -1 only
 * for I/O errors; problems are counted in *RES.
 */
extern int qed_check (struct qed_image *img, bool repair,
                      struct qed_check_result *res,
                      qad_check_report_fn report, void *opaque);

/* Progress of a check: DONE of TOTAL steps (one per L1 entry, then one
 * for the leak pass and repair), at least every 64 steps and at the end.
 */
typedef void (*qed_check_progress_fn) (void *opaque, uint64_t done,
                                       uint64_t total);

/* qed_check, calling PROGRESS (may be NULL) with POPAQUE as it goes. */
extern int qed_check_progress (struct qed_image *img, bool repair,
                               struct qed_check_result *res,
                               qad_check_report_fn report, void *opaque,
                               qed_check_progress_fn progress,
                               void *popaque);

#endif /* QAD_QED_CHECK_H */
