/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * The cache holds a fixed number of slots, chosen from the byte limit,
 * so memory is bounded whatever the image size.  Replacement is least
 * recently used by a global tick.  One mutex protects the slots; a
 * miss reads the table while holding it.  That serialises misses only:
 * hits copy a few entries out and return.  Callers never keep pointers
 * into the cache, so eviction cannot pull a table from under them.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "byte-swapping.h"
#include "cleanup.h"
#include "full-io.h"
#include "minmax.h"
#include "qad-error.h"
#include "qed-l2cache.h"

struct l2_slot {
  uint64_t offset;              /* 0 = empty slot */
  uint64_t last_use;
  uint64_t *entries;            /* host-endian, allocated on first use */
};

struct qed_l2cache {
  pthread_mutex_t lock;         /* protects everything below */
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

/* With the lock held: an empty or least recently used slot. */
static struct l2_slot *
victim_slot (struct qed_l2cache *c)
{
  struct l2_slot *v = &c->slots[0];
  size_t i;

  for (i = 0; i < c->nr_slots; ++i) {
    if (c->slots[i].offset == 0)
      return &c->slots[i];
    if (c->slots[i].last_use < v->last_use)
      v = &c->slots[i];
  }
  return v;
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
qed_l2cache_get (struct qed_l2cache *c, int fd, const char *filename,
                 uint64_t table_offset, uint64_t index, uint64_t count,
                 uint64_t *out)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  struct l2_slot *s;
  uint64_t i;

  if (index >= c->nr_entries || count > c->nr_entries - index) {
    qad_error ("%s: internal error: L2 index %" PRIu64 "+%" PRIu64
               " out of range", filename, index, count);
    errno = EINVAL;
    return -1;
  }

  s = find_slot (c, table_offset);
  if (s == NULL) {
    s = claim_slot (c, table_offset);
    if (s == NULL)
      return -1;
    if (full_pread (fd, s->entries, c->table_bytes, table_offset) == -1) {
      qad_error ("%s: cannot read L2 table at offset %" PRIu64 ": %m",
                 filename, table_offset);
      return -1;
    }
    for (i = 0; i < c->nr_entries; ++i)
      s->entries[i] = load_le64 (&s->entries[i]);
    s->offset = table_offset;
  }
  s->last_use = ++c->tick;
  memcpy (out, &s->entries[index], count * sizeof *out);
  return 0;
}

void
qed_l2cache_set (struct qed_l2cache *c, uint64_t table_offset,
                 uint64_t index, uint64_t value)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  struct l2_slot *s = find_slot (c, table_offset);

  if (s && index < c->nr_entries)
    s->entries[index] = value;
}

int
qed_l2cache_insert_empty (struct qed_l2cache *c, uint64_t table_offset)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  struct l2_slot *s = find_slot (c, table_offset);

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

  for (i = 0; i < c->nr_slots; ++i)
    c->slots[i].offset = 0;
}
