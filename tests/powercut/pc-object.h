/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Reopen a crash state through common/ and read the guest-visible disk.
 *
 * Each object has fixed file names inside the state:
 *   qed           disk.qed (backing base.raw, when there is one)
 *   addcow        disk.raw + disk.add-cow (backing base.raw)
 *   dirty-bitmap  disk.raw + disk.qdb with bitmap "b1"
 * READ fills DISK (SIZE bytes) and returns 0, or returns -1 with the
 * reason in MSG: the state did not open, was inconsistent, or (dirty
 * bitmap) a granule that differs from INIT is not dirty; -2 when one of
 * the object's files does not exist in the state.  WORK is a
 * scratch directory for files the library opens by name.
 */

#ifndef PC_OBJECT_H
#define PC_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "pc-replay.h"

struct pc_object {
  const char *name;
  int (*read) (struct pc_log *lg, const char *work, uint8_t *disk,
               uint64_t size, const uint8_t *init, char *msg, size_t len);
  uint64_t *repairs;            /* states that needed a repair on open */
};

extern const struct pc_object pc_object_qed;
extern const struct pc_object pc_object_addcow;
extern const struct pc_object pc_object_dirty_bitmap;

/* Helpers shared by the readers (pc-object.c). */
extern const char *pc_last_error (void);
extern int pc_put_file (struct pc_log *lg, const char *work,
                        const char *name, char *msg, size_t len);
extern void pc_copy_out (const uint8_t *src, size_t srclen, uint8_t *dst,
                         uint64_t off, uint64_t len);

#endif /* PC_OBJECT_H */
