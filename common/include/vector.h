/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Growable typed arrays, in the style of nbdkit's common/utils/vector.h
 * (our own code).  DEFINE_VECTOR_TYPE (names, char *) declares
 *
 *   typedef struct { char **ptr; size_t len; size_t cap; } names;
 *
 * with names_reserve (&v, n) (room for N more), names_append (&v, e)
 * and names_reset (&v) (free the array).  An empty vector is the zero
 * value, so "names v = empty_vector;" needs no init call.
 *
 * Design notes: growth goes through one untyped function,
 * vector_grow, which returns the new array instead of writing through
 * a punned pointer, so the typed wrappers stay free of aliasing
 * questions.  Every size is overflow-checked: a request that cannot be
 * represented fails with ENOMEM like any other failed allocation.  The
 * capacity grows by half again (at least 8 items) so that appending N
 * items costs O(N) copying.  No locking: callers lock.
 */

#ifndef QAD_VECTOR_H
#define QAD_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "checked-overflow.h"

#define empty_vector { .ptr = NULL, .len = 0, .cap = 0 }

/* Make room for N more items of ITEMSIZE bytes after LEN items in PTR,
 * which has room for *CAP.  Returns the array (PTR when it already has
 * room), or NULL with errno set and PTR untouched.  So when PTR may be
 * NULL with nothing to add (N == 0 and *CAP == 0), check for room
 * before calling, as name##_reserve does.
 */
static inline void *
vector_grow (void *ptr, size_t len, size_t *cap, size_t n, size_t itemsize)
{
  size_t need, newcap, bytes;
  void *p;

  if (ADD_OVERFLOW (len, n, &need)) {
    errno = ENOMEM;
    return NULL;
  }
  if (need <= *cap)
    return ptr;
  if (ADD_OVERFLOW (*cap, *cap / 2 + 8, &newcap) || newcap < need)
    newcap = need;
  if (MUL_OVERFLOW (newcap, itemsize, &bytes)) {
    newcap = need;
    if (MUL_OVERFLOW (newcap, itemsize, &bytes)) {
      errno = ENOMEM;
      return NULL;
    }
  }
  p = realloc (ptr, bytes);
  if (p == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  *cap = newcap;
  return p;
}

#define DEFINE_VECTOR_TYPE(name, type)                                  \
  typedef struct {                                                      \
    type *ptr;                  /* the items */                         \
    size_t len;                 /* items in use */                      \
    size_t cap;                 /* items allocated */                   \
  } name;                                                               \
                                                                        \
  /* Room for N more items.  0, or -1 with errno set. */                \
  static inline int __attribute__ ((__unused__))                        \
  name##_reserve (name *v, size_t n)                                    \
  {                                                                     \
    type *p;                                                            \
                                                                        \
    if (n <= v->cap - v->len)   /* also an empty vector and N == 0 */   \
      return 0;                                                         \
    p = vector_grow (v->ptr, v->len, &v->cap, n, sizeof (type));        \
    if (p == NULL)                                                      \
      return -1;                                                        \
    v->ptr = p;                                                         \
    return 0;                                                           \
  }                                                                     \
                                                                        \
  /* Add ELEM at the end.  0, or -1 with errno set (V unchanged). */    \
  static inline int __attribute__ ((__unused__))                        \
  name##_append (name *v, type elem)                                    \
  {                                                                     \
    if (name##_reserve (v, 1) == -1)                                    \
      return -1;                                                        \
    v->ptr[v->len++] = elem;                                            \
    return 0;                                                           \
  }                                                                     \
                                                                        \
  /* Free the array (not the items) and make V empty again. */          \
  static inline void __attribute__ ((__unused__))                       \
  name##_reset (name *v)                                                \
  {                                                                     \
    free (v->ptr);                                                      \
    v->ptr = NULL;                                                      \
    v->len = v->cap = 0;                                                \
  }

#endif /* QAD_VECTOR_H */
