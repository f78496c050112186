/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* An open QED image: header, L1 table, bounded L2 cache, backing
 * chain.  Reads and extents here; writes in qed-write.c; the
 * consistency check in qed-check.c; creation in qed-create.c.
 */

#ifndef QAD_QED_IMAGE_H
#define QAD_QED_IMAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backing-policy.h"
#include "blockdev.h"
#include "qed-header.h"
#include "qed-l2cache.h"
#include "rangelock.h"

#define QED_DEFAULT_L2_CACHE_BYTES (UINT64_C (32) * 1024 * 1024)
#define QED_MAX_CHAIN_DEPTH 32

struct qed_open_options {
  bool readonly;
  uint64_t l2_cache_bytes;      /* 0 = default */
  bool no_backing;              /* don't open the backing file */
  bool lock;                    /* take QEMU-compatible locks on the
                                   image (write lock unless readonly)
                                   and on its backing files (read) */
  /* Which backing files the image may make us open: NULL = follow. */
  const struct qad_backing_rules *backing_rules;
  /* A backing file refused by backing_rules leaves img->backing NULL
   * and sets backing_refused, instead of failing the open (for
   * reports such as qad-img info; never for serving data).
   */
  bool backing_refusal_ok;
};

/* What a range of guest clusters maps to. */
enum qed_kind {
  QED_KIND_UNALLOCATED,         /* falls through to backing, else zero */
  QED_KIND_ZERO,                /* L2 entry 1 */
  QED_KIND_DATA,                /* a data cluster in this file */
};

struct qed_mapping {
  enum qed_kind kind;
  uint64_t host_offset;         /* for DATA: file offset of the start */
  uint64_t length;              /* bytes, > 0 */
};

struct qed_image {
  struct qad_blockdev dev;      /* first: a QED image can be a backing */
  int fd;                       /* the image file, or -1 when FILE */
  struct qad_blockdev *file;    /* or the image as a block device
                                   (qed_open_dev: read-only; owned) */
  int lock_fd;                  /* after qed_upgrade_readwrite: the
                                   first (read-only) descriptor, kept
                                   open because it holds the locks */
  bool readonly;
  struct qed_header header;
  struct qed_geometry geom;
  char *backing_path;           /* resolved name, or NULL */
  bool backing_raw;             /* backing is raw (probed or NO_PROBE) */
  struct qad_blockdev *backing; /* NULL when none or not opened */
  bool backing_refused;         /* see backing_refusal_ok */
  struct qed_l2cache *l2cache;  /* has its own lock */

  pthread_mutex_t lock;         /* protects l1, file_end, header
                                   features and the allocation state */
  uint64_t *l1;                 /* host-endian copy of the L1 table */
  uint64_t file_end;            /* allocation point: end of the file */

  /* Write-path state (qed-write.c), protected by lock. */
  unsigned allocs_in_flight;    /* allocating writes not yet complete */
  uint64_t alloc_gen;           /* bumped when an allocation completes */
  bool need_check_on_disk;      /* NEED_CHECK is set in the file */
  bool unchecked;               /* opened with NEED_CHECK and not yet
                                   repaired: never clear it */

  pthread_mutex_t l2_alloc_lock; /* serialises creating L2 tables; taken
                                    before lock, never after */
  struct rangelock changing;    /* guest clusters whose L2 entries are
                                   being changed (qed-write.c) */

  /* Group commit (qed-write.c): concurrent callers that need their
   * completed writes durable share one fdatasync.
   */
  pthread_mutex_t sync_lock;    /* protects the fields below */
  pthread_cond_t sync_done;
  uint64_t sync_requested;      /* tickets handed out */
  uint64_t sync_completed;      /* every ticket <= this is durable */
  bool sync_running;

  /* Set (atomically, once) when an fdatasync of the image fails: the
   * kernel may have dropped dirty pages and will not report it again,
   * so no later flush can be trusted.  Every later write, zero, trim
   * and flush fails with EIO until the image is reopened.  Read with
   * __atomic_load_n: the write path tests it without a lock.
   */
  int poisoned;
};

extern struct qed_image *qed_open (const char *filename,
                                   const struct qed_open_options *opts);
/* Close; for a read-write image clears NEED_CHECK after a final flush
 * when nothing is in flight.  Returns -1 if that failed.
 */
extern int qed_close (struct qed_image *img);

/* Make an image opened read-only writable: open the file again
 * read-write (checking that it is still the same file), extend the
 * locks to a writer's (refused while another process uses the image)
 * and clear readonly.  Nothing is written.  The caller must make sure
 * no other thread uses IMG meanwhile.  Returns -1 with an error and
 * IMG unchanged on failure.
 */
extern int qed_upgrade_readwrite (struct qed_image *img, bool lock);

/* Where the backing file of an image opened by qed_open_dev is.
 * Called with the chain depth (1 for the top image's backing), the
 * name of the image that needs it and the backing name from its
 * header; returns an open block device (the raw bytes of the backing
 * file), or NULL after reporting an error.
 */
typedef struct qad_blockdev *(*qed_backing_opener) (void *opaque,
                                                    unsigned depth,
                                                    const char *image,
                                                    const char *name);

/* Open a QED image read-only from the block device FILE, which holds
 * its bytes (ownership passes to the image, also on failure).  Its
 * backing chain is opened through OPENER; backing formats are probed
 * as for local files.  OPTS->readonly is implied and OPTS->lock is
 * ignored (there is no local file to lock).
 */
extern struct qed_image *qed_open_dev (struct qad_blockdev *file,
                                       const struct qed_open_options *opts,
                                       qed_backing_opener opener,
                                       void *opaque);

/* Read COUNT bytes at OFFSET of the image file itself (not the guest
 * view), from the fd or the block device.  Errors name the image.
 */
extern int qed_read_file (struct qed_image *img, void *buf, uint64_t count,
                          uint64_t offset);

/* Load into the L2 cache every L2 table that maps guest bytes
 * [OFFSET, OFFSET+COUNT) (for NBD_CMD_CACHE).  Validates L1 entries.
 */
extern int qed_prefetch_l2 (struct qed_image *img, uint64_t count,
                            uint64_t offset);

/* Read the backing name from the header area (NUL-terminated, caller
 * frees).  NULL with no error when there is no backing file.
 */
extern int qed_read_backing_name (struct qed_image *img, char **name);

/* Map the range [offset, offset+len) from its start: the first run of
 * clusters with the same kind (and, for DATA, contiguous in the file).
 */
extern int qed_map (struct qed_image *img, uint64_t offset, uint64_t len,
                    struct qed_mapping *m);

extern int qed_pread (struct qed_image *img, void *buf, uint64_t count,
                      uint64_t offset);

/* Extent at OFFSET (as struct qad_blockdev_ops.extent). */
extern int qed_extent (struct qed_image *img, uint64_t offset, uint64_t max,
                       uint64_t *len, uint32_t *flags);

/* Write path (qed-write.c).  The image must be open read-write.
 * Concurrent calls are safe: allocation of a guest cluster is
 * serialised by a range lock, so two writers never both allocate it.
 */
extern int qed_pwrite (struct qed_image *img, const void *buf,
                       uint64_t count, uint64_t offset, bool fua);
/* Zero a range.  Whole clusters become zero clusters (or stay
 * unallocated when that already reads as zeroes); allocated clusters
 * are zeroed in place, punched when MAY_TRIM.  With FAST, fails with
 * ENOTSUP instead of writing data.
 */
extern int qed_zero (struct qed_image *img, uint64_t count, uint64_t offset,
                     bool may_trim, bool fast, bool fua);
/* Discard whole clusters: allocated ones are punched in place and
 * then read as zeroes, also with a backing file.  Partial clusters are
 * left alone.
 */
extern int qed_trim (struct qed_image *img, uint64_t count, uint64_t offset,
                     bool fua);
/* Make everything written so far durable; clears NEED_CHECK when no
 * allocation is in flight.
 */
extern int qed_flush (struct qed_image *img);
/* True after a failed fdatasync (see struct qed_image.poisoned). */
extern bool qed_poisoned (struct qed_image *img);

/* DEV as a QED image, or NULL when it is another kind (raw, NBD). */
extern struct qed_image *qed_image_of (struct qad_blockdev *dev);
/* Clear unknown autoclear bits (read-write open). */
extern int qed_clear_autoclear (struct qed_image *img);
/* Write the in-memory header to the file (no sync). */
extern int qed_write_header (struct qed_image *img);

/* Validation of table entries, shared with qed-check.c. */
extern bool qed_table_offset_valid (const struct qed_geometry *g,
                                    uint64_t offset, uint64_t file_size);
extern bool qed_cluster_offset_valid (const struct qed_geometry *g,
                                      uint64_t offset, uint64_t file_size);

/* Open a backing file read-only: FORMAT "raw", "qed", or NULL to probe
 * (QED magic means QED, anything else raw).  QED backings bring their
 * own chains; loops and chains deeper than QED_MAX_CHAIN_DEPTH fail.
 * No backing policy applies (the caller chose PATH).
 */
extern struct qad_blockdev *qed_open_backing (const char *path,
                                              const char *format,
                                              bool lock);

/* A file that a backing chain must not contain (the image on top,
 * an add-cow sidecar): compared by device and inode, so that another
 * name, a symbolic link or a hard link of it is caught too.
 */
struct qed_file_id {
  dev_t dev;
  ino_t ino;
  const char *what;             /* e.g. "the image", for the message */
};

/* qed_open_backing, refusing (errno ELOOP) a chain in which any file
 * is one of the NR_EXCLUDED files in EXCLUDED.
 */
extern struct qad_blockdev *qed_open_backing_excluding
  (const char *path, const char *format, bool lock,
   const struct qed_file_id *excluded, size_t nr_excluded);

/* The same for a backing NAME recorded in the file IMAGE (PATH is its
 * resolved form): the file and every file of its own chain are opened
 * under RULES (NULL = follow), checked on the opened descriptor, and
 * none may be one of the EXCLUDED files.
 */
extern struct qad_blockdev *
qed_open_backing_checked (const char *image, const char *name,
                          const char *path, const char *format, bool lock,
                          const struct qad_backing_rules *rules,
                          const struct qed_file_id *excluded,
                          size_t nr_excluded);

/* Resolve a backing name relative to the directory of IMAGE_PATH.
 * Caller frees.
 */
extern char *qed_resolve_backing_name (const char *image_path,
                                       const char *name);

#endif /* QAD_QED_IMAGE_H */
