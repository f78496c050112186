/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef QAD_MINMAX_H
#define QAD_MINMAX_H

/* Each use gets its own temporaries (via __COUNTER__), so that nested
 * MIN (MIN (a, b), c) does not shadow, and arguments are evaluated once.
 */
#define MINMAX_CAT_(a, b) a##b
#define MINMAX_CAT(a, b) MINMAX_CAT_ (a, b)
#define MINMAX_(op, a, b, n)                                            \
  ({ __typeof__ (a) MINMAX_CAT (_a, n) = (a);                           \
     __typeof__ (b) MINMAX_CAT (_b, n) = (b);                           \
     MINMAX_CAT (_a, n) op MINMAX_CAT (_b, n) ?                         \
       MINMAX_CAT (_a, n) : MINMAX_CAT (_b, n); })
#define MIN(a, b) MINMAX_ (<, a, b, __COUNTER__)
#define MAX(a, b) MINMAX_ (>, a, b, __COUNTER__)

#endif /* QAD_MINMAX_H */
