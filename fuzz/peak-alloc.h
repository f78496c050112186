/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Peak heap accounting for the fuzz replay driver (peak-alloc.c). */

#ifndef QAD_PEAK_ALLOC_H
#define QAD_PEAK_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* False when the allocator cannot be wrapped (sanitizer builds). */
extern bool peak_alloc_enabled (void);
/* Bytes allocated and not yet freed. */
extern size_t peak_alloc_live (void);
/* Start a new measurement: the peak becomes the current live bytes. */
extern void peak_alloc_reset (void);
/* The largest live byte count since the last reset. */
extern size_t peak_alloc_peak (void);

#endif /* QAD_PEAK_ALLOC_H */
