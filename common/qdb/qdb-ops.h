/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Operations on the bitmaps of a QDB model (add, remove, clear,
 * enable, disable, merge), shared by "qad-img bitmap FILE" (offline)
 * and the dirty-bitmap filter's control socket (live), so that both
 * accept exactly the same commands with the same checks.
 *
 * freeze and release exist only live: qdb_op_apply refuses them,
 * qdb_op_apply_live applies their part in the model (freeze clears the
 * ENABLED flag, under the same rules as every operation) and the filter
 * keeps the frozen views.
 */

#ifndef QAD_QDB_OPS_H
#define QAD_QDB_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "qdb.h"

enum qdb_op_kind {
  QDB_OP_ADD, QDB_OP_REMOVE, QDB_OP_CLEAR, QDB_OP_ENABLE, QDB_OP_DISABLE,
  QDB_OP_MERGE, QDB_OP_FREEZE, QDB_OP_RELEASE, QDB_OP_INFO,
};

struct qdb_op {
  enum qdb_op_kind kind;
  const char *name;             /* NULL for INFO */
  const char *into;             /* MERGE only */
  uint64_t granularity;         /* ADD only */
  bool dirty;                   /* CLEAR only: to all dirty, not clean */
};

/* The word for a CLEAR with .dirty set (option --dirty-all). */
#define QDB_OP_DIRTY_ALL_WORD "dirty-all"

/* The word used for KIND on the control socket and in messages. */
extern const char *qdb_op_word (enum qdb_op_kind kind);

/* Apply OP to the model (bits loaded).  DISK_SIZE is the size a new
 * bitmap covers (0: the size of the existing bitmaps, an error when
 * there are none).  A bitmap with the IN_USE flag may only be cleared
 * (to clean or to all dirty) or removed (docs/specs/qdb.txt, flags):
 * anything else on it is refused, naming the file, the bitmap and the
 * flag.  Reports (qad_error) and returns -1 on failure; the model may
 * then be partly changed, so callers apply a command to a copy
 * (qdb_clone) or discard the model.
 */
extern int qdb_op_apply (struct qdb_file *qdb, const struct qdb_op *op,
                         uint64_t disk_size);

/* The same for a file being served (the filter's control socket):
 * FREEZE disables the bitmap (refused on an IN_USE one, like enable),
 * RELEASE changes nothing in the model.  The caller checks and keeps
 * which bitmaps are frozen.
 */
extern int qdb_op_apply_live (struct qdb_file *qdb, const struct qdb_op *op,
                              uint64_t disk_size);

/* A deep copy of a model with its bits loaded (through an in-memory
 * serialisation, so that the copy is exactly what the file would hold).
 */
extern struct qdb_file *qdb_clone (struct qdb_file *qdb);

#endif /* QAD_QDB_OPS_H */
