/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The scratch files of frozen bitmaps (qdb-freeze.h): how one is made
 * without a name, and how the names a crash may leave are recognised
 * and removed.
 *
 * Notes on the design.  A scratch file holds copies of disk data that
 * only its open descriptor should ever reach, and nothing ever opens
 * one by name, so it should have none.  Where the file system supports
 * O_TMPFILE it never has one.  Elsewhere it is made with mkstemp,
 * unlinked at once and the directory synced, so that the name is gone
 * for good; a crash (a power cut) in that short window can still leave
 * it behind.  Such a name is always
 *
 *   .qdb-freeze-BASE-HASH-XXXXXX
 *
 * BASE: the QDB file's base name (at most its first 200 bytes, for
 * people); HASH: 16 lowercase hex digits, the 64-bit FNV-1a hash of
 * the QDB file's absolute path with symbolic links resolved (so QDB
 * files of the same base name in different directories that share a
 * scratch directory are told apart); XXXXXX: mkstemp's six letters or
 * digits.  The server that holds a QDB file's lock is the only one
 * that may have a scratch file of it, so at start it removes every
 * regular file of its own user whose name is exactly of that form for
 * its QDB file, and nothing else.
 */

#ifndef QAD_QDB_SCRATCH_H
#define QAD_QDB_SCRATCH_H

#include <stdbool.h>

/* The fixed part of the names of QDB_PATH's scratch files,
 * ".qdb-freeze-BASE-HASH-" (the caller frees it), or NULL with errno
 * set.
 */
extern char *qdb_scratch_prefix (const char *qdb_path);

/* Open a new, nameless, empty scratch file in DIR for the QDB file
 * QDB_PATH, read-write and close-on-exec: with O_TMPFILE when
 * TRY_TMPFILE and the file system supports it, else through mkstemp
 * and unlink (TRY_TMPFILE is false only in tests of that fallback).
 * Returns the descriptor, or -1 with errno set (the caller reports).
 */
extern int qdb_scratch_open (const char *dir, const char *qdb_path,
                             bool try_tmpfile);

/* Remove from DIR the scratch file names of QDB_PATH (see above).
 * Only the holder of QDB_PATH's lock may call it.  Returns how many
 * were removed, or -1 (reported, naming DIR and the file).
 */
extern int qdb_scratch_remove_stale (const char *dir, const char *qdb_path);

#endif /* QAD_QDB_SCRATCH_H */
