/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A vector of malloc'd strings: the repeatable parameters of the
 * filters (qed-backing=, dirty-bitmap-name=).
 */

#ifndef QAD_STRING_VECTOR_H
#define QAD_STRING_VECTOR_H

#include <stdlib.h>

#include "vector.h"

DEFINE_VECTOR_TYPE (string_vector, char *);

/* Free every string, then the array; V is empty again. */
static inline void __attribute__ ((__unused__))
string_vector_free_all (string_vector *v)
{
  size_t i;

  for (i = 0; i < v->len; ++i)
    free (v->ptr[i]);
  string_vector_reset (v);
}

#endif /* QAD_STRING_VECTOR_H */
