/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* How every format's check reports what it finds: qed_check and
 * addcow_check call one of these for each problem found or fixed, and
 * qad-img, the QED plugin and the fuzzers pass theirs.
 */

#ifndef QAD_CHECK_REPORT_H
#define QAD_CHECK_REPORT_H

/* MSG is a complete sentence naming the file; OPAQUE is the caller's.
 * A check given NULL reports nothing and only counts.
 */
typedef void (*qad_check_report_fn) (void *opaque, const char *msg);

#endif /* QAD_CHECK_REPORT_H */
