/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef QAD_MINMAX_H
#define QAD_MINMAX_H

#define MIN(a, b) ({ __typeof__ (a) _a = (a); __typeof__ (b) _b = (b); \
                     _a < _b ? _a : _b; })
#define MAX(a, b) ({ __typeof__ (a) _a = (a); __typeof__ (b) _b = (b); \
                     _a > _b ? _a : _b; })

#endif /* QAD_MINMAX_H */
