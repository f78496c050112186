/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The data invariants of a crash state.
 *
 * Notes on the design
 *
 * A write or write-zeroes request D had to survive a crash at time C
 * when it was acknowledged before C and either had FUA, or a flush
 * acknowledged before C was issued after D's acknowledgement, on D's
 * connection or, when the server advertises multi-conn, on any.
 *
 * For each byte, let M be the latest issue time of the requests that
 * had to survive and cover it.  A request acknowledged before M was
 * overwritten by such a request, so the byte may hold only:
 *   - the value of a covering request acknowledged at or after M (or
 *     never acknowledged: it failed or was in flight), which includes
 *     the surviving request itself, so a durable write with nothing
 *     concurrent or later over it must read back exactly;
 *   - when no covering request had to survive, its value before the
 *     workload;
 *   - for a trim among the allowed requests: zero or the value before
 *     the workload (a trim's contents are unspecified; ours read as
 *     zeroes or fall through to the backing file).
 * Bytes no request touched must hold their value before the workload.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc-expect.h"
#include "pc-rng.h"
#include "vector.h"

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return x < y ? -1 : x > y;
}

/* Index of the interval starting at OFF. */
static size_t
interval_of (const struct pc_expect *ex, uint64_t off)
{
  size_t lo = 0, hi = ex->nr_intervals;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (ex->bound[mid] <= off)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

struct pc_expect *
pc_expect_load (const char *path)
{
  FILE *fp = fopen (path, "r");
  struct pc_expect *ex;
  char line[512];
  size_t alloc = 0, nb = 0, i, j, total = 0;
  unsigned mc;

  if (fp == NULL) {
    perror (path);
    return NULL;
  }
  ex = calloc (1, sizeof *ex);
  if (ex == NULL || fgets (line, sizeof line, fp) == NULL ||
      sscanf (line, "H %" SCNu64 " %u %u", &ex->size, &mc,
              &ex->nconns) != 3 || ex->nconns == 0) {
    fprintf (stderr, "powercut: %s: bad header line\n", path);
    goto fail;
  }
  ex->multi_conn = mc != 0;
  while (fgets (line, sizeof line, fp) != NULL) {
    struct pc_wop op, *ops;
    int fua, ok;
    if (sscanf (line, "%c %" SCNu64 " %u %" SCNu64 " %" SCNu64 " %d %"
                SCNu64 " %" SCNu64 " %d", &op.kind, &op.id, &op.conn,
                &op.off, &op.len, &fua, &op.t_issue, &op.t_ack,
                &ok) != 9 || op.conn >= ex->nconns ||
        op.off > ex->size || op.len > ex->size - op.off) {
      fprintf (stderr, "powercut: %s: bad line: %s", path, line);
      goto fail;
    }
    op.fua = fua != 0;
    op.data = NULL;
    if (op.kind == 'W') {
      uint64_t b;
      op.data = malloc (op.len + 1);
      if (op.data == NULL) { perror ("malloc"); exit (EXIT_FAILURE); }
      for (b = 0; b < op.len; ++b)
        op.data[b] = pc_pattern (op.id, op.off + b);
    }
    if (!ok)
      op.t_ack = UINT64_MAX;
    ops = vector_grow (ex->ops, ex->nr_ops, &alloc, 1, sizeof *ex->ops);
    if (ops == NULL) { perror ("realloc"); exit (EXIT_FAILURE); }
    ex->ops = ops;
    ex->ops[ex->nr_ops++] = op;
  }
  fclose (fp);
  fp = NULL;

  /* Intervals. */
  ex->bound = malloc ((2 * ex->nr_ops + 2) * sizeof *ex->bound);
  if (ex->bound == NULL) { perror ("malloc"); exit (EXIT_FAILURE); }
  ex->bound[nb++] = 0;
  ex->bound[nb++] = ex->size;
  for (i = 0; i < ex->nr_ops; ++i) {
    if (ex->ops[i].kind == 'F' || ex->ops[i].len == 0)
      continue;
    ex->bound[nb++] = ex->ops[i].off;
    ex->bound[nb++] = ex->ops[i].off + ex->ops[i].len;
  }
  qsort (ex->bound, nb, sizeof *ex->bound, cmp_u64);
  for (i = j = 0; i < nb; ++i)
    if (j == 0 || ex->bound[j - 1] != ex->bound[i])
      ex->bound[j++] = ex->bound[i];
  ex->nr_intervals = j - 1;     /* the last bound is SIZE */

  ex->cover_start = calloc (ex->nr_intervals + 1, sizeof *ex->cover_start);
  if (ex->cover_start == NULL) { perror ("calloc"); exit (EXIT_FAILURE); }
  for (i = 0; i < ex->nr_ops; ++i) {
    const struct pc_wop *op = &ex->ops[i];
    if (op->kind == 'F' || op->len == 0)
      continue;
    for (j = interval_of (ex, op->off);
         j < ex->nr_intervals && ex->bound[j] < op->off + op->len; ++j) {
      ex->cover_start[j + 1]++;
      total++;
    }
  }
  for (j = 0; j < ex->nr_intervals; ++j)
    ex->cover_start[j + 1] += ex->cover_start[j];
  ex->cover = malloc ((total + 1) * sizeof *ex->cover);
  {
    size_t *fill = calloc (ex->nr_intervals + 1, sizeof *fill);
    if (ex->cover == NULL || fill == NULL) {
      perror ("malloc");
      exit (EXIT_FAILURE);
    }
    for (i = 0; i < ex->nr_ops; ++i) {
      const struct pc_wop *op = &ex->ops[i];
      if (op->kind == 'F' || op->len == 0)
        continue;
      for (j = interval_of (ex, op->off);
           j < ex->nr_intervals && ex->bound[j] < op->off + op->len; ++j)
        ex->cover[ex->cover_start[j] + fill[j]++] = i;
    }
    free (fill);
  }
  ex->durable = calloc (ex->nr_ops + 1, sizeof *ex->durable);
  ex->flush_issue = calloc (ex->nconns + 1, sizeof *ex->flush_issue);
  if (ex->durable == NULL || ex->flush_issue == NULL) {
    perror ("calloc");
    exit (EXIT_FAILURE);
  }
  return ex;

 fail:
  if (fp)
    fclose (fp);
  pc_expect_free (ex);
  return NULL;
}

void
pc_expect_free (struct pc_expect *ex)
{
  size_t i;

  if (ex == NULL)
    return;
  for (i = 0; i < ex->nr_ops; ++i)
    free (ex->ops[i].data);
  free (ex->ops);
  free (ex->bound);
  free (ex->cover_start);
  free (ex->cover);
  free (ex->durable);
  free (ex->flush_issue);
  free (ex);
}

/* The value request OP puts at byte B (trims: see above). */
static inline uint8_t
value_of (const struct pc_wop *op, uint64_t b)
{
  return op->kind == 'W' ? op->data[b - op->off] : 0;
}

/* Does ACTUAL[A..E) hold exactly what OP put there? */
static bool
all_from (const struct pc_wop *op, const uint8_t *actual, uint64_t a,
          uint64_t e)
{
  uint64_t b;

  if (op->kind == 'W')
    return memcmp (actual + a, op->data + (a - op->off), e - a) == 0;
  for (b = a; b < e; ++b)
    if (actual[b])
      return false;
  return true;
}

uint64_t
pc_expect_check (struct pc_expect *ex, uint64_t crash_ts,
                 const uint8_t *init, const uint8_t *actual,
                 char *msg, size_t msglen, uint64_t *durable_out)
{
  uint64_t bad = 0, ndurable = 0;
  size_t i, j, k;
  uint32_t allowed[256];

  msg[0] = '\0';
  /* Which flushes count, and which requests had to survive. */
  for (i = 0; i <= ex->nconns; ++i)
    ex->flush_issue[i] = 0;
  for (i = 0; i < ex->nr_ops; ++i) {
    const struct pc_wop *op = &ex->ops[i];
    if (op->kind == 'F' && op->t_ack < crash_ts) {
      if (op->t_issue > ex->flush_issue[op->conn])
        ex->flush_issue[op->conn] = op->t_issue;
      if (op->t_issue > ex->flush_issue[ex->nconns])
        ex->flush_issue[ex->nconns] = op->t_issue;
    }
  }
  for (i = 0; i < ex->nr_ops; ++i) {
    const struct pc_wop *op = &ex->ops[i];
    uint64_t f = ex->flush_issue[ex->multi_conn ? ex->nconns : op->conn];
    ex->durable[i] = (op->kind == 'W' || op->kind == 'Z') &&
      op->t_ack < crash_ts && (op->fua || op->t_ack < f);
    ndurable += ex->durable[i];
  }
  if (durable_out)
    *durable_out = ndurable;

  for (j = 0; j < ex->nr_intervals; ++j) {
    uint64_t a = ex->bound[j], e = ex->bound[j + 1], b, m = 0;
    size_t c0 = ex->cover_start[j], c1 = ex->cover_start[j + 1];
    size_t nallowed = 0;
    bool has_d = false, allow_init, allow_zero = false;

    if (c0 == c1) {
      if (memcmp (init + a, actual + a, e - a) == 0)
        continue;
      for (b = a; b < e && init[b] == actual[b]; ++b)
        ;
      if (bad == 0)
        snprintf (msg, msglen, "byte %" PRIu64 " (no request wrote it) "
                  "reads 0x%02x, was 0x%02x", b, actual[b], init[b]);
      for (; b < e; ++b)
        bad += init[b] != actual[b];
      continue;
    }
    for (k = c0; k < c1; ++k)
      if (ex->durable[ex->cover[k]]) {
        has_d = true;
        if (ex->ops[ex->cover[k]].t_issue > m)
          m = ex->ops[ex->cover[k]].t_issue;
      }
    allow_init = !has_d;
    for (k = c0; k < c1; ++k) {
      const struct pc_wop *op = &ex->ops[ex->cover[k]];
      if (has_d && op->t_ack < m)
        continue;
      if (op->kind == 'T') {
        allow_init = allow_zero = true;
        continue;
      }
      if (nallowed < sizeof allowed / sizeof allowed[0])
        allowed[nallowed++] = ex->cover[k];
      else
        allow_init = allow_zero = true; /* cannot happen in our runs */
    }
    /* Usually one request explains the whole interval. */
    for (k = 0; k < nallowed; ++k)
      if (all_from (&ex->ops[allowed[k]], actual, a, e))
        break;
    if (k < nallowed || (allow_init && memcmp (actual + a, init + a, e - a) == 0))
      continue;
    for (b = a; b < e; ++b) {
      uint8_t v = actual[b];
      bool ok = (allow_init && v == init[b]) || (allow_zero && v == 0);
      for (k = 0; !ok && k < nallowed; ++k)
        ok = value_of (&ex->ops[allowed[k]], b) == v;
      if (ok)
        continue;
      if (bad == 0) {
        int n = snprintf (msg, msglen, "byte %" PRIu64 " reads 0x%02x; "
                          "allowed:%s", b, v, allow_init ? " before" : "");
        for (k = 0; k < nallowed && n > 0 && (size_t) n < msglen; ++k) {
          const struct pc_wop *op = &ex->ops[allowed[k]];
          n += snprintf (msg + n, msglen - n, " %c%" PRIu64 "%s=0x%02x",
                         op->kind, op->id,
                         ex->durable[allowed[k]] ? "(durable)" : "",
                         value_of (op, b));
        }
        if (n > 0 && (size_t) n < msglen)
          snprintf (msg + n, msglen - n, "; before=0x%02x", init[b]);
      }
      bad++;
    }
  }
  return bad;
}
