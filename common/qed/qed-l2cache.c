/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * The cache holds a fixed number of slots, chosen from the byte limit,
 * so memory is bounded whatever the image size.  Replacement is least
 * recently used by a global tick.  One mutex protects the slots, and is
 * never held across I/O: a miss marks its slot "loading", reads the
 * table with the mutex released, then publishes it.  Others who want
 * that table (or to update one of its entries) wait on a condition
 * variable meanwhile; loading slots are never evicted.  Callers never
 * keep pointers into the cache, so eviction cannot pull a table from
 * under them.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "minmax.h"
#include "qad-error.h"
#include "qed-l2cache.h"

struct l2_slot {
  uint64_t offset;              /* 0 = empty slot */
  uint64_t last_use;
  bool loading;                 /* being read: entries not valid yet */
  uint64_t *entries;            /* host-endian, allocated on first use */
};

struct qed_l2cache {
  pthread_mutex_t lock;         /* protects everything below */
  pthread_cond_t loaded;        /* a slot finished loading */
  uint64_t table_bytes;
  uint64_t nr_entries;
  size_t nr_slots;
  uint64_t tick;
  struct l2_slot *slots;
};

struct qed_l2cache *
qed_l2cache_new (uint64_t table_bytes, uint64_t max_bytes)
{
  struct qed_l2cache *c = calloc (1, sizeof *c);
  uint64_t n = MAX (max_bytes / table_bytes, UINT64_C (1));

  if (c == NULL)
    goto enomem;
  c->nr_slots = MIN (n, UINT64_C (65536));
  c->slots = calloc (c->nr_slots, sizeof *c->slots);
  if (c->slots == NULL)
    goto enomem;
  c->table_bytes = table_bytes;
  c->nr_entries = table_bytes / 8;
  pthread_mutex_init (&c->lock, NULL);
  pthread_cond_init (&c->loaded, NULL);
  return c;

 enomem:
  qad_error ("L2 cache: %m");
  if (c)
    free (c->slots);
  free (c);
  return NULL;
}

void
qed_l2cache_free (struct qed_l2cache *c)
{
  size_t i;

  if (!c)
    return;
  for (i = 0; i < c->nr_slots; ++i)
    free (c->slots[i].entries);
  free (c->slots);
  pthread_cond_destroy (&c->loaded);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

/* With the lock held. */
static struct l2_slot *
find_slot (struct qed_l2cache *c, uint64_t offset)
{
  size_t i;

  for (i = 0; i < c->nr_slots; ++i)
    if (c->slots[i].offset == offset)
      return &c->slots[i];
  return NULL;
}

/* With the lock held: wait while the slot for OFFSET is loading, then
 * return it (or NULL when it is not cached).
 */
static struct l2_slot *
find_loaded_slot (struct qed_l2cache *c, uint64_t offset)
{
  struct l2_slot *s;

  while ((s = find_slot (c, offset)) != NULL && s->loading)
    pthread_cond_wait (&c->loaded, &c->lock);
  return s;
}

/* With the lock held: an empty or least recently used slot that is
 * not loading, waiting for one if every slot is loading.
 */
static struct l2_slot *
victim_slot (struct qed_l2cache *c)
{
  struct l2_slot *v;
  size_t i;

  for (;;) {
    v = NULL;
    for (i = 0; i < c->nr_slots; ++i) {
      struct l2_slot *s = &c->slots[i];
      if (s->loading)
        continue;
      if (s->offset == 0)
        return s;
      if (v == NULL || s->last_use < v->last_use)
        v = s;
    }
    if (v)
      return v;
    pthread_cond_wait (&c->loaded, &c->lock);
  }
}

/* With the lock held: prepare a slot for OFFSET, contents unset. */
static struct l2_slot *
claim_slot (struct qed_l2cache *c, uint64_t offset)
{
  struct l2_slot *s = victim_slot (c);

  s->offset = 0;
  if (s->entries == NULL) {
    s->entries = malloc (c->table_bytes);
    if (s->entries == NULL) {
      qad_error ("L2 cache: cannot allocate %" PRIu64 " bytes: %m",
                 c->table_bytes);
      return NULL;
    }
  }
  s->last_use = ++c->tick;
  return s;
}

int
qed_l2cache_get (struct qed_l2cache *c, qed_l2cache_read_fn read,
                 void *opaque, const char *filename, uint64_t table_offset,
                 uint64_t index, uint64_t count, uint64_t *out)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  struct l2_slot *s;
  uint64_t i;
  int r;

  if (index >= c->nr_entries || count > c->nr_entries - index) {
    qad_error ("%s: internal error: L2 index %" PRIu64 "+%" PRIu64
               " out of range", filename, index, count);
    errno = EINVAL;
    return -1;
  }

  s = find_loaded_slot (c, table_offset);
  if (s == NULL) {
    s = claim_slot (c, table_offset);
    if (s == NULL)
      return -1;
    s->offset = table_offset;
    s->loading = true;
    /* Read with the lock released; others wait for this slot only. */
    pthread_mutex_unlock (&c->lock);
    r = read (opaque, s->entries, c->table_bytes, table_offset);
    if (r == 0)
      for (i = 0; i < c->nr_entries; ++i)
        s->entries[i] = load_le64 (&s->entries[i]);
    pthread_mutex_lock (&c->lock);
    s->loading = false;
    pthread_cond_broadcast (&c->loaded);
    if (r == -1) {
      s->offset = 0;
      qad_error ("%s: cannot read L2 table at offset %" PRIu64 ": %m",
                 filename, table_offset);
      return -1;
    }
  }
  s->last_use = ++c->tick;
  memcpy (out, &s->entries[index], count * sizeof *out);
  return 0;
}

int
qed_l2cache_load (struct qed_l2cache *c, qed_l2cache_read_fn read,
                  void *opaque, const char *filename, uint64_t table_offset)
{
  uint64_t first;

  return qed_l2cache_get (c, read, opaque, filename, table_offset, 0, 1,
                          &first);
}

void
qed_l2cache_set (struct qed_l2cache *c, uint64_t table_offset,
                 uint64_t index, uint64_t value)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  /* A table still loading may have read the entry before the caller
   * wrote it: wait, then update.
   */
  struct l2_slot *s = find_loaded_slot (c, table_offset);

  if (s && index < c->nr_entries)
    s->entries[index] = value;
}

int
qed_l2cache_insert_empty (struct qed_l2cache *c, uint64_t table_offset)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  struct l2_slot *s = find_loaded_slot (c, table_offset);

  if (s == NULL)
    s = claim_slot (c, table_offset);
  if (s == NULL)
    return -1;
  memset (s->entries, 0, c->table_bytes);
  s->offset = table_offset;
  return 0;
}

void
qed_l2cache_clear (struct qed_l2cache *c)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  size_t i;

  for (i = 0; i < c->nr_slots; ++i) {
    while (c->slots[i].loading)
      pthread_cond_wait (&c->loaded, &c->lock);
    c->slots[i].offset = 0;
  }
}
