/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The dirty-bitmap filter's live control (dirty-bitmap-control=SOCKET)
 * and the freezes it keeps.
 *
 * Notes on the design.  A thread serves the protocol of
 * common/qdb/qdb-control.h.  A command is atomic with respect to
 * writes by draining (qdb_tracker_begin_command): new requests wait,
 * and the command starts when no request is in flight (between
 * qdb_tracker_begin_io and _end_io: bitmap marking, copy-before-write
 * and the plugin's write) and no commit runs.  It then applies every
 * operation to a copy of the model, writes the copy to a new file
 * (persist: fsync, rename, fsync of the directory) and swaps it in.  So
 * every write lands in the enabled bitmaps of before or of after the
 * command, and no write is half-way through during it.  All of this
 * happens under the tracker's lock.
 *
 * Every operation, freeze and release included, goes through
 * qdb_op_apply_live (common/qdb/qdb-ops.c), which holds the rules
 * qad-img obeys too (an IN_USE bitmap may only be cleared, reset to all
 * dirty or removed); this file adds only what is about freezes (a
 * frozen bitmap cannot be removed, cleared, enabled or merged into).
 *
 * Freeze (a command too) keeps a qdb_freeze (common/qdb/qdb-freeze.c)
 * per frozen bitmap; every write, zero and trim copies the granules it
 * is about to change into the freeze's scratch file first, and the view
 * dirty-bitmap:NAME reads through it.  The list of freezes changes only
 * during a command, when nothing is in flight, so requests read it
 * without the lock.
 *
 * Lock order: the tracker's lock, then (inside persist) the new QDB
 * file's whole-file lock; a freeze's locks are never taken under the
 * tracker's lock except to free a released freeze, when nothing is in
 * flight.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "cleanup.h"
#include "dirty-bitmap.h"
#include "qad-error.h"
#include "qdb-control.h"
#include "qdb-ops.h"
#include "vector.h"

/* Changed only by a command, under the tracker's lock. */
DEFINE_VECTOR_TYPE (freeze_vector, struct qdb_freeze *);
static freeze_vector frozen;

/* The control thread. */
static struct qdb_ctl_server *ctl_server;
static pthread_t ctl_thread;
static bool ctl_thread_started;

/* While the control thread runs a command, the first error message
 * reported through qad_error (always control_error_handler) is kept
 * here for the reply.
 */
static __thread char *captured_error;
static __thread bool capturing;

void
control_error_handler (const char *msg)
{
  if (capturing && !captured_error)
    captured_error = strdup (msg);
  nbdkit_error ("%s", msg);
}

/* Keep the first error this thread reports from now on. */
void
error_capture_begin (void)
{
  capturing = true;
  free (captured_error);
  captured_error = NULL;
}

/* Stop keeping errors; the first one kept (the caller frees it), or
 * NULL.
 */
char *
error_capture_end (void)
{
  char *msg = captured_error;

  capturing = false;
  captured_error = NULL;
  return msg;
}

/* The freeze of bitmap NAME, or NULL.  Between begin_io and end_io. */
struct qdb_freeze *
find_freeze (const char *name)
{
  size_t i;

  for (i = 0; i < frozen.len; ++i)
    if (strcmp (qdb_freeze_name (frozen.ptr[i]), name) == 0)
      return frozen.ptr[i];
  return NULL;
}

int
read_next (void *opaque, void *buf, uint32_t count, uint64_t offset,
           int *err)
{
  nbdkit_next *next = opaque;

  return next->pread (next, buf, count, offset, 0, err);
}

/* Between begin_io and end_io, before a request that changes
 * [offset, offset+count) is passed down.
 */
int
freezes_before_write (nbdkit_next *next, uint64_t offset, uint32_t count,
                      int *err)
{
  size_t i;

  for (i = 0; i < frozen.len; ++i)
    if (qdb_freeze_before_write (frozen.ptr[i], offset, count, read_next, next,
                                 err) == -1)
      return -1;
  return 0;
}

static bool
in_names (const char **names_, size_t n, const char *name)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (strcmp (names_[i], name) == 0)
      return true;
  return false;
}

/* Apply OPS atomically.  Called with the lock held, nothing in flight
 * and no commit running.  Sets *INFO when a reply needs the bitmaps.
 */
static int
run_command (const struct qdb_op *ops, size_t n, bool *info)
{
  const char *fnames[QDB_CTL_MAX_OPS + 64];
  freeze_vector nfz = empty_vector;
  struct qdb_file *copy;
  size_t nr_fnames = 0, i, j;
  bool changes = false;

  *info = false;
  for (i = 0; i < n; ++i) {
    if (ops[i].kind == QDB_OP_INFO)
      *info = true;
    else
      changes = true;
  }
  if (!changes)
    return 0;
  if (qdb_tracker_poisoned (&tracker)) {
    qad_error ("%s: the dirty bitmaps are no longer kept up to date (an "
               "earlier write failed): refusing commands", qdb_path);
    return -1;
  }
  if (frozen.len > 64) {
    qad_error ("%s: too many frozen bitmaps", qdb_path);
    return -1;
  }
  for (i = 0; i < frozen.len; ++i)
    fnames[nr_fnames++] = qdb_freeze_name (frozen.ptr[i]);

  copy = qdb_clone (tracker.qdb);
  if (!copy)
    return -1;
  for (i = 0; i < n; ++i) {
    const struct qdb_op *op = &ops[i];

    switch (op->kind) {
    case QDB_OP_INFO:
      continue;
    case QDB_OP_FREEZE:
      if (in_names (fnames, nr_fnames, op->name)) {
        qad_error ("%s: bitmap \"%s\" is already frozen", qdb_path,
                   op->name);
        goto err;
      }
      fnames[nr_fnames++] = op->name;
      break;                    /* the model's part: qdb_op_apply_live */
    case QDB_OP_RELEASE:
      for (j = 0; j < nr_fnames; ++j)
        if (strcmp (fnames[j], op->name) == 0)
          break;
      if (j == nr_fnames) {
        qad_error ("%s: bitmap \"%s\" is not frozen", qdb_path, op->name);
        goto err;
      }
      fnames[j] = fnames[--nr_fnames];
      break;
    case QDB_OP_REMOVE: case QDB_OP_CLEAR: case QDB_OP_ENABLE:
      if (in_names (fnames, nr_fnames, op->name)) {
        qad_error ("%s: bitmap \"%s\" is frozen: release it first "
                   "(%s)", qdb_path, op->name, qdb_op_word (op->kind));
        goto err;
      }
      break;
    case QDB_OP_MERGE:
      if (in_names (fnames, nr_fnames, op->into)) {
        qad_error ("%s: bitmap \"%s\" is frozen: release it first "
                   "(merge into it)", qdb_path, op->into);
        goto err;
      }
      break;
    default:
      break;
    }
    if (qdb_op_apply_live (copy, op, disk_size) == -1)
      goto err;
  }

  /* New freezes first (they may fail), then the file, then the swap. */
  if (freeze_vector_reserve (&nfz, nr_fnames) == -1) {
    qad_error ("realloc: %m");
    goto err;
  }
  for (i = 0; i < nr_fnames; ++i) {
    struct qdb_freeze *fz = NULL;
    for (j = 0; j < frozen.len; ++j)
      if (strcmp (qdb_freeze_name (frozen.ptr[j]), fnames[i]) == 0)
        fz = frozen.ptr[j];
    if (!fz) {
      struct qdb_bitmap *bm = qdb_find_bitmap (copy, fnames[i]);
      fz = qdb_freeze_new (scratch_dir, qdb_path, fnames[i],
                           bm->granularity, disk_size);
      if (!fz)
        goto err;
    }
    nfz.ptr[nfz.len++] = fz;    /* reserved above */
  }
  if (persist (copy) == -1)
    goto err;

  for (j = 0; j < frozen.len; ++j) {
    for (i = 0; i < nfz.len; ++i)
      if (nfz.ptr[i] == frozen.ptr[j])
        break;
    if (i == nfz.len)
      qdb_freeze_free (frozen.ptr[j]);  /* released */
  }
  freeze_vector_reset (&frozen);
  frozen = nfz;
  if (qdb_tracker_set_model (&tracker, copy, disk_size) == -1) {
    qdb_tracker_poison (&tracker, "could not set the bitmaps up again "
                        "after a command");
    return -1;
  }
  return 0;

 err:
  for (i = 0; i < nfz.len; ++i) {
    for (j = 0; j < frozen.len; ++j)
      if (nfz.ptr[i] == frozen.ptr[j])
        break;
    if (j == frozen.len)
      qdb_freeze_free (nfz.ptr[i]);
  }
  freeze_vector_reset (&nfz);
  qdb_free (copy);
  return -1;
}

/* The "ok" reply, with the bitmaps when INFO.  Called with the lock. */
static char *
ok_reply (bool info, size_t *len)
{
  char *buf = NULL;
  size_t i, j;
  FILE *fp = open_memstream (&buf, len);

  if (!fp)
    return NULL;
  fputs ("ok\n", fp);
  for (i = 0; info && tracker.qdb && i < tracker.qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &tracker.qdb->bitmaps[i];
    const char *state = bm->flags & QDB_FLAG_ENABLED ? "enabled" : "disabled";
    for (j = 0; j < frozen.len; ++j)
      if (strcmp (qdb_freeze_name (frozen.ptr[j]), bm->name) == 0)
        state = "frozen";
    fprintf (fp, "bitmap %s %" PRIu64 " %s %" PRIu64 " %" PRIu64 "\n",
             bm->name, bm->granularity, state, qdb_dirty_bytes (bm),
             bm->disk_size);
  }
  if (fclose (fp) == EOF) {
    free (buf);
    return NULL;
  }
  return buf;
}

static char *
handle_control (void *opaque, char *body, size_t len, size_t *reply_len)
{
  struct qdb_op ops[QDB_CTL_MAX_OPS];
  CLEANUP_FREE char *why = NULL;
  char err[256];
  char *reply = NULL;
  size_t n;
  bool info = false;
  int r;

  if (qdb_ctl_decode_request (body, len, ops, &n, err, sizeof err) == -1)
    goto error;

  error_capture_begin ();
  {
    size_t i;
    bool only_info = true;

    for (i = 0; i < n; ++i)
      only_info &= ops[i].kind == QDB_OP_INFO;
    /* Info alone need not pause writes. */
    qdb_tracker_begin_command (&tracker, !only_info);
    r = run_command (ops, n, &info);
    if (r == 0)
      reply = ok_reply (info, reply_len);
    qdb_tracker_end_command (&tracker);
  }
  why = error_capture_end ();
  if (r == 0)
    return reply;
  snprintf (err, sizeof err, "%s", why ? why
            : "the command failed (see the server's log)");

 error:
  *reply_len = asprintf (&reply, "error %s\n", err);
  return *reply_len == (size_t) -1 ? NULL : reply;
}

static void *
control_thread (void *arg)
{
  qdb_ctl_server_run (ctl_server, handle_control, NULL);
  return NULL;
}

/* In .get_ready, so that a refusal is seen before the fork. */
int
control_new (const char *path)
{
  if (!path)
    return 0;
  ctl_server = qdb_ctl_server_new (path);
  return ctl_server ? 0 : -1;
}

/* After a successful .after_fork: start serving the control socket. */
int
control_start (void)
{
  int err;

  if (!ctl_server)
    return 0;
  err = pthread_create (&ctl_thread, NULL, control_thread, NULL);
  if (err) {
    errno = err;
    nbdkit_error ("pthread_create: %m");
    return -1;
  }
  ctl_thread_started = true;
  return 0;
}

void
control_stop (void)
{
  if (ctl_thread_started) {
    qdb_ctl_server_stop (ctl_server);
    pthread_join (ctl_thread, NULL);
    ctl_thread_started = false;
  }
}

/* After a refusal in .after_fork, when nbdkit exits without .cleanup:
 * remove the socket (the thread was never started).
 */
void
control_abandon (void)
{
  if (!ctl_thread_started) {
    qdb_ctl_server_free (ctl_server);
    ctl_server = NULL;
  }
}

void
control_free (void)
{
  size_t i;

  for (i = 0; i < frozen.len; ++i)
    qdb_freeze_free (frozen.ptr[i]);
  freeze_vector_reset (&frozen);
  qdb_ctl_server_free (ctl_server);
  ctl_server = NULL;
}
