/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef QAD_QED_CREATE_H
#define QAD_QED_CREATE_H

#include <stdint.h>

#include "backing-policy.h"

struct qed_create_options {
  uint64_t size;                /* guest size; 0 = the backing file's */
  uint32_t cluster_size;        /* 0 = default (64 KiB) */
  uint32_t table_size;          /* 0 = default (4) */
  const char *backing;          /* backing file name as stored, or NULL */
  const char *backing_format;   /* "raw" (sets NO_PROBE), "qed" or NULL */
  /* The backing file (opened for its size) and its chain are opened
   * under these rules; NULL = follow.
   */
  const struct qad_backing_rules *backing_rules;
};

/* Create (or overwrite) FILENAME as an empty QED image.  Every
 * parameter is validated first; nothing is written if one is bad.
 */
extern int qed_create (const char *filename,
                       const struct qed_create_options *opts);

#endif /* QAD_QED_CREATE_H */
