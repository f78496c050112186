/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * To show that no mutated file makes the parsers allocate more than
 * the configured limits, the replay driver needs the peak of live heap
 * bytes during each mutant.  getrusage's ru_maxrss cannot give it: a
 * large calloc is served by fresh zero pages that are never touched,
 * so a hostile allocation can stay out of the resident set.  So the
 * allocator itself is wrapped: malloc, calloc, realloc, free and the
 * aligned variants are defined here and forward to glibc's __libc_*
 * entry points, counting malloc_usable_size of every block.  Calls
 * from inside libc (strdup, realpath, asprintf) come through here too.
 *
 * Under AddressSanitizer the allocator belongs to the sanitizer, so
 * nothing is wrapped and peak_alloc_enabled () is false.
 */

#include <config.h>

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "peak-alloc.h"

#if defined (__SANITIZE_ADDRESS__)
#define NO_WRAP 1
#elif defined (__has_feature)
#if __has_feature (address_sanitizer)
#define NO_WRAP 1
#endif
#endif

static atomic_size_t live, peak;

size_t
peak_alloc_live (void)
{
  return atomic_load (&live);
}

void
peak_alloc_reset (void)
{
  atomic_store (&peak, atomic_load (&live));
}

size_t
peak_alloc_peak (void)
{
  return atomic_load (&peak);
}

#ifdef NO_WRAP

bool
peak_alloc_enabled (void)
{
  return false;
}

#else

extern void *__libc_malloc (size_t);
extern void *__libc_calloc (size_t, size_t);
extern void *__libc_realloc (void *, size_t);
extern void *__libc_memalign (size_t, size_t);
extern void __libc_free (void *);

bool
peak_alloc_enabled (void)
{
  return true;
}

static void
added (void *p)
{
  size_t n, now, old;

  if (p == NULL)
    return;
  n = malloc_usable_size (p);
  now = atomic_fetch_add (&live, n) + n;
  old = atomic_load (&peak);
  while (now > old && !atomic_compare_exchange_weak (&peak, &old, now))
    ;
}

static void
removed (void *p)
{
  if (p)
    atomic_fetch_sub (&live, malloc_usable_size (p));
}

void *
malloc (size_t n)
{
  void *p = __libc_malloc (n);
  added (p);
  return p;
}

void *
calloc (size_t a, size_t b)
{
  void *p = __libc_calloc (a, b);
  added (p);
  return p;
}

void *
realloc (void *p, size_t n)
{
  size_t old = p ? malloc_usable_size (p) : 0;
  void *q = __libc_realloc (p, n);

  if (q == NULL && n != 0)
    return NULL;                /* p is untouched */
  atomic_fetch_sub (&live, old);
  added (q);
  return q;
}

void
free (void *p)
{
  removed (p);
  __libc_free (p);
}

void *
memalign (size_t align, size_t n)
{
  void *p = __libc_memalign (align, n);
  added (p);
  return p;
}

void *
aligned_alloc (size_t align, size_t n)
{
  return memalign (align, n);
}

int
posix_memalign (void **ret, size_t align, size_t n)
{
  void *p;

  if (align % sizeof (void *) != 0 || (align & (align - 1)) != 0)
    return EINVAL;
  p = memalign (align, n);
  if (p == NULL)
    return ENOMEM;
  *ret = p;
  return 0;
}

#endif /* !NO_WRAP */
