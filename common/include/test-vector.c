/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Tests of vector.h: growth keeps every item, reserve makes room that
 * appends then use without moving the array, and sizes that overflow
 * fail with ENOMEM leaving the vector as it was.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include "vector.h"

DEFINE_VECTOR_TYPE (int_vector, int);

int
main (void)
{
  int_vector v = empty_vector;
  int *before;
  size_t i, cap;

  /* Reserving nothing on the empty vector succeeds and allocates
   * nothing (the control thread reserves 0 freezes this way).
   */
  errno = 0;
  assert (int_vector_reserve (&v, 0) == 0);
  assert (v.ptr == NULL && v.len == 0 && v.cap == 0 && errno == 0);

  /* Appends from empty: every item survives every regrowth. */
  for (i = 0; i < 10000; ++i) {
    assert (int_vector_append (&v, (int) i) == 0);
    assert (v.len == i + 1 && v.cap >= v.len);
  }
  for (i = 0; i < 10000; ++i)
    assert (v.ptr[i] == (int) i);

  /* Reserve: the room is there, later appends do not move the array. */
  assert (int_vector_reserve (&v, 5000) == 0);
  assert (v.cap >= v.len + 5000);
  before = v.ptr;
  for (i = 0; i < 5000; ++i)
    assert (int_vector_append (&v, -1) == 0);
  assert (v.ptr == before);
  assert (int_vector_reserve (&v, 0) == 0 && v.ptr == before);

  /* Overflow: len + n, and n * sizeof item, cannot be represented.
   * Both fail with ENOMEM and leave the vector untouched.
   */
  cap = v.cap;
  errno = 0;
  assert (int_vector_reserve (&v, SIZE_MAX) == -1 && errno == ENOMEM);
  assert (v.ptr == before && v.cap == cap && v.len == 15000);
  errno = 0;
  assert (int_vector_reserve (&v, SIZE_MAX / sizeof (int)) == -1);
  assert (errno == ENOMEM && v.ptr == before && v.cap == cap);
  assert (v.ptr[0] == 0 && v.ptr[9999] == 9999 && v.ptr[v.len - 1] == -1);

  /* Reset returns to the empty vector, which is usable again. */
  int_vector_reset (&v);
  assert (v.ptr == NULL && v.len == 0 && v.cap == 0);
  assert (int_vector_append (&v, 42) == 0 && v.ptr[0] == 42);
  int_vector_reset (&v);

  printf ("test-vector: all passed\n");
  return 0;
}
