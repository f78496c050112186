/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Consistency check (and repair) of an add-cow sidecar against its
 * image and backing file, for "qad-img check".
 */

#ifndef QAD_ADDCOW_CHECK_H
#define QAD_ADDCOW_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "check-report.h"

struct addcow_check_result {
  uint64_t disk_size;           /* the image's size (0 if missing) */
  uint64_t nclusters;
  uint64_t in_image;            /* bits set */
  uint64_t corruptions;         /* problems that remain */
  uint64_t repaired;            /* problems fixed by --repair */
  bool all_allocated;           /* the flag, after any repair */
};

/* Check PATH: the header (refusal = -1), the image file exists and
 * its size fits the bitmap, the backing file exists (unless
 * ALL_ALLOCATED, or an NBD URI, which is not contacted), no bit past
 * the disk's end, and ALL_ALLOCATED agrees with the bits.  With
 * REPAIR: size a fresh bitmap, clear bits past the end, set
 * ALL_ALLOCATED when every bit is 1 (the file is locked meanwhile).
 * Returns 0 when the check ran (look at R), -1 when it could not.
 */
extern int addcow_check (const char *path, bool repair,
                         qad_check_report_fn problem, void *opaque,
                         struct addcow_check_result *r);

#endif /* QAD_ADDCOW_CHECK_H */
