/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lsb-bits.h"
#include "qad-error.h"
#include "qdb-ops.h"
#include "qdb.h"

const char *
qdb_op_word (enum qdb_op_kind kind)
{
  switch (kind) {
  case QDB_OP_ADD: return "add";
  case QDB_OP_REMOVE: return "remove";
  case QDB_OP_CLEAR: return "clear";
  case QDB_OP_ENABLE: return "enable";
  case QDB_OP_DISABLE: return "disable";
  case QDB_OP_MERGE: return "merge";
  case QDB_OP_FREEZE: return "freeze";
  case QDB_OP_RELEASE: return "release";
  case QDB_OP_INFO: return "info";
  }
  return "?";
}

static struct qdb_bitmap *
find (struct qdb_file *qdb, const char *name)
{
  struct qdb_bitmap *bm = qdb_find_bitmap (qdb, name);

  if (!bm) {
    qad_error ("%s: no bitmap named \"%s\"", qdb->name, name);
    errno = ENOENT;
  }
  return bm;
}

/* An IN_USE bitmap may be a subset of the truth: only clearing it (to
 * clean or to all dirty) or removing it makes sense, anything else
 * (enable, disable, merge from or into it, freeze) would carry the
 * subset on.  The one place this rule of docs/specs/qdb.txt is
 * enforced, for qad-img and the control socket alike.
 */
static int
refuse_in_use (struct qdb_file *qdb, const struct qdb_bitmap *bm,
               const struct qdb_op *op)
{
  if (!bm || !(bm->flags & QDB_FLAG_IN_USE))
    return 0;
  qad_error ("%s: bitmap \"%s\" has the IN_USE flag (inconsistent): "
             "refusing to %s it; only clear, dirty-all and remove are "
             "allowed", qdb->name, bm->name, qdb_op_word (op->kind));
  errno = EINVAL;
  return -1;
}

/* LIVE: the file is being served, so FREEZE and RELEASE are possible. */
static int
apply (struct qdb_file *qdb, const struct qdb_op *op, uint64_t disk_size,
       bool live)
{
  struct qdb_bitmap *bm, *dst;

  if (op->kind == QDB_OP_ADD) {
    if (disk_size == 0 && qdb->nr_bitmaps > 0)
      disk_size = qdb->bitmaps[0].disk_size;
    else if (disk_size == 0) {
      qad_error ("%s: the file has no bitmaps: give the disk size with "
                 "--size", qdb->name);
      errno = EINVAL;
      return -1;
    }
    return qdb_add_bitmap (qdb, op->name, op->granularity, disk_size,
                           QDB_FLAG_ENABLED) == -1 ? -1 : 0;
  }
  if (op->kind == QDB_OP_INFO)
    return 0;
  if (!live && (op->kind == QDB_OP_FREEZE || op->kind == QDB_OP_RELEASE)) {
    qad_error ("%s: %s is only possible while the file is served (use "
               "--connect=SOCKET)", qdb->name, qdb_op_word (op->kind));
    errno = EINVAL;
    return -1;
  }

  bm = find (qdb, op->name);
  if (!bm)
    return -1;
  /* RELEASE is exempt: it only ends a freeze, which IN_USE prevents. */
  if (op->kind != QDB_OP_REMOVE && op->kind != QDB_OP_CLEAR &&
      op->kind != QDB_OP_RELEASE &&
      (refuse_in_use (qdb, bm, op) == -1 ||
       (op->kind == QDB_OP_MERGE && op->into &&
        refuse_in_use (qdb, qdb_find_bitmap (qdb, op->into), op) == -1)))
    return -1;
  switch (op->kind) {
  case QDB_OP_REMOVE:
    return qdb_remove_bitmap (qdb, bm - qdb->bitmaps);
  case QDB_OP_CLEAR:
    if (op->dirty)
      qdb_set_all_dirty (bm);
    else
      qdb_clear_bitmap (bm);
    return 0;
  case QDB_OP_ENABLE:
    bm->flags |= QDB_FLAG_ENABLED;
    return 0;
  case QDB_OP_DISABLE:
  case QDB_OP_FREEZE:           /* the caller keeps the frozen view */
    bm->flags &= ~QDB_FLAG_ENABLED;
    return 0;
  case QDB_OP_RELEASE:          /* the caller drops the frozen view */
    return 0;
  case QDB_OP_MERGE:
    dst = find (qdb, op->into);
    if (!dst)
      return -1;
    return qdb_merge_bitmap (qdb, bm, dst);
  default:
    abort ();                   /* handled above */
  }
}

int
qdb_op_apply (struct qdb_file *qdb, const struct qdb_op *op,
              uint64_t disk_size)
{
  return apply (qdb, op, disk_size, false);
}

int
qdb_op_apply_live (struct qdb_file *qdb, const struct qdb_op *op,
                   uint64_t disk_size)
{
  return apply (qdb, op, disk_size, true);
}

struct qdb_file *
qdb_clone (struct qdb_file *qdb)
{
  struct qdb_membuf mb = { 0 };
  struct qdb_io io;
  struct qdb_file *copy = NULL, saved = *qdb;
  uint64_t **tables, *offsets;
  size_t i;

  /* qdb_write lays the model out anew (table offsets and entries,
   * directory, region map): keep the source describing its own file.
   */
  tables = calloc (qdb->nr_bitmaps + 1, sizeof *tables);
  offsets = calloc (qdb->nr_bitmaps + 1, sizeof *offsets);
  if (!tables || !offsets) {
    qad_error ("%s: calloc: %m", qdb->name);
    goto out;
  }
  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    const struct qdb_bitmap *bm = &qdb->bitmaps[i];
    tables[i] = malloc ((bm->table_size + 1) * sizeof (uint64_t));
    if (!tables[i]) {
      qad_error ("%s: malloc: %m", qdb->name);
      goto out;
    }
    memcpy (tables[i], bm->table, bm->table_size * sizeof (uint64_t));
    offsets[i] = bm->table_offset;
  }

  qdb_io_init_mem (&io, &mb, qdb->name);
  if (qdb_write (&io, qdb, true) == 0)
    copy = qdb_read (&io, true);
  free (mb.data);
  if (copy)
    copy->name = qdb->name;

  for (i = 0; i < qdb->nr_bitmaps; ++i) {
    struct qdb_bitmap *bm = &qdb->bitmaps[i];
    memcpy (bm->table, tables[i], bm->table_size * sizeof (uint64_t));
    bm->table_offset = offsets[i];
  }
  qdb->dir_offset = saved.dir_offset;
  qdb->dir_size = saved.dir_size;
  qdb->incompat = saved.incompat;
  qdb->region_map_offset = saved.region_map_offset;
  qdb->region_map_size = saved.region_map_size;
  qdb->file_size = saved.file_size;
  qdb->leaked_clusters = saved.leaked_clusters;
  qdb->autoclear = saved.autoclear;

 out:
  if (tables)
    for (i = 0; i < qdb->nr_bitmaps; ++i)
      free (tables[i]);
  free (tables);
  free (offsets);
  return copy;
}
