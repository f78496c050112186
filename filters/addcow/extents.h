/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef ADDCOW_EXTENTS_H
#define ADDCOW_EXTENTS_H

#include <stdint.h>

#include <nbdkit-filter.h>

/* The .extents of the add-cow disk for [OFFSET, OFFSET+COUNT). */
extern int cow_extents (nbdkit_next *next, uint32_t count, uint64_t offset,
                        uint32_t flags, struct nbdkit_extents *extents,
                        int *err);

#endif /* ADDCOW_EXTENTS_H */
