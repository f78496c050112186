/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The add-cow filter's sidecar: create it when missing, lock it, read
 * its header, check the filter's parameters against it and open the
 * backing file it names.
 */

#ifndef ADDCOW_SIDECAR_H
#define ADDCOW_SIDECAR_H

#include <stdbool.h>
#include <stdint.h>

#include "addcow.h"
#include "backing-policy.h"
#include "blockdev.h"

/* The filter's parameters (absolute paths; NULL or 0: not given). */
struct sidecar_params {
  char *sidecar;                /* addcow= */
  char *backing;                /* addcow-backing=, absolute or a URI */
  char *backing_format;         /* addcow-backing-format= */
  uint32_t cluster_bits;        /* addcow-cluster-size= */
  char *image;                  /* addcow-image=, as given */
  char *plugin_file;            /* the plugin's file= */
  enum qad_backing_policy backing_policy; /* addcow-backing-policy= */
  char *backing_dir;            /* addcow-backing-dir=, canonical */
  bool backing_supplied;        /* addcow-local-image=: the plugin below
                                 * is the backing, backing its label */
};

struct sidecar {
  int fd;                       /* locked; -1 when closed */
  struct addcow_header hdr;
  uint64_t file_size;           /* when the header was read */
  struct qad_blockdev *backing; /* NULL: none, or ALL_ALLOCATED */
};

/* Open (creating the header when missing) and lock P->sidecar, check
 * P against it and, unless it is ALL_ALLOCATED, open its backing file.
 * Errors go to nbdkit_error.
 */
extern int sidecar_open (const struct sidecar_params *p, struct sidecar *sc);

/* Load the bitmap for a disk of DISK_SIZE bytes; a new sidecar (header
 * only) gets an all-zero bitmap of the right size, made durable.
 */
extern int sidecar_load_bitmap (struct sidecar *sc, const char *name,
                                uint64_t disk_size, uint8_t **bitmap,
                                uint64_t *bmlen);

extern void sidecar_close (struct sidecar *sc);

#endif /* ADDCOW_SIDECAR_H */
