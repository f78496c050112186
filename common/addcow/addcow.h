/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The add-cow format (docs/specs/add-cow.txt): parse, validate and
 * serialize the header, size and scan the COW bitmap, resolve the
 * names recorded in the header.  Pure C: no nbdkit headers.  The
 * filter (filters/addcow), the CLI (tools/addcow-cmds.c) and the
 * fuzz harness all go through these functions, so every format fact
 * lives here.
 */

#ifndef QAD_ADDCOW_H
#define QAD_ADDCOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsb-bits.h"

#define ADDCOW_MAGIC "ACOW"             /* ASCII, 4 bytes, no NUL */
#define ADDCOW_FIXED_HEADER 76          /* bytes 0..75 */
#define ADDCOW_MIN_CLUSTER_BITS 12      /* 4 KiB */
#define ADDCOW_MAX_CLUSTER_BITS 21      /* 2 MiB */
#define ADDCOW_DEFAULT_CLUSTER_BITS 16  /* 64 KiB */
#define ADDCOW_MIN_HEADER_SIZE 4096
#define ADDCOW_MAX_HEADER_SIZE (UINT32_C (1) << ADDCOW_MAX_CLUSTER_BITS)
#define ADDCOW_FORMAT_LEN 16            /* format name fields */

/* Field offsets. */
#define ADDCOW_OFF_MAGIC 0
#define ADDCOW_OFF_BACKING_NAME_OFFSET 4
#define ADDCOW_OFF_BACKING_NAME_SIZE 8
#define ADDCOW_OFF_IMAGE_NAME_OFFSET 12
#define ADDCOW_OFF_IMAGE_NAME_SIZE 16
#define ADDCOW_OFF_CLUSTER_BITS 20
#define ADDCOW_OFF_FEATURES 24
#define ADDCOW_OFF_COMPAT_FEATURES 32
#define ADDCOW_OFF_HEADER_SIZE 40
#define ADDCOW_OFF_BACKING_FORMAT 44
#define ADDCOW_OFF_IMAGE_FORMAT 60

/* Incompatible feature bits (spec section 4, bytes 24-31). */
#define ADDCOW_FEATURE_BACKING_SUPPLIED UINT64_C (1)
#define ADDCOW_FEATURES_KNOWN ADDCOW_FEATURE_BACKING_SUPPLIED

/* Compatible feature bits. */
#define ADDCOW_COMPAT_ALL_ALLOCATED UINT64_C (1)
#define ADDCOW_COMPAT_KNOWN ADDCOW_COMPAT_ALL_ALLOCATED

/* The parsed header.  Strings are NUL-terminated copies (the file
 * holds them without NUL).  backing_file is NULL when there is none.
 */
struct addcow_header {
  uint32_t cluster_bits;
  uint32_t header_size;         /* HEADER_SIZE == bitmap offset */
  uint64_t features;            /* only ADDCOW_FEATURES_KNOWN bits */
  uint64_t compat_features;     /* unknown bits are kept on rewrite */
  char *backing_file;           /* NULL: no backing file */
  char *image_file;
  char backing_format[ADDCOW_FORMAT_LEN + 1]; /* "" when no backing */
  char image_format[ADDCOW_FORMAT_LEN + 1];
};

/* BACKING_SUPPLIED: the backing is not opened by name, the program
 * that opens the sidecar is handed it; backing_file is only a label
 * (spec section 4).
 */
static inline bool
addcow_backing_supplied (const struct addcow_header *h)
{
  return (h->features & ADDCOW_FEATURE_BACKING_SUPPLIED) != 0;
}

/* HEADER_SIZE for a cluster size: max(4096, cluster size). */
static inline uint32_t
addcow_header_size_for (uint32_t cluster_bits)
{
  uint32_t cs = UINT32_C (1) << cluster_bits;
  return cs > ADDCOW_MIN_HEADER_SIZE ? cs : ADDCOW_MIN_HEADER_SIZE;
}

/* Parse and validate a header.  BUF holds the first LEN bytes of the
 * file FILE (name used in messages only).  LEN must cover HEADER_SIZE
 * bytes (ADDCOW_MAX_HEADER_SIZE always does), otherwise the header is
 * reported as truncated.  Returns 0, or -1 after qad_error naming the
 * file, the field and the value (errno = EINVAL).  On success free the
 * strings with addcow_header_free.
 */
extern int addcow_parse_header (const void *buf, size_t len, const char *file,
                                struct addcow_header *h);

/* Check a header built in memory (by create) against the same rules. */
extern int addcow_validate_header (const struct addcow_header *h,
                                   const char *file);

/* Serialize H into BUF, which must hold h->header_size bytes.  Names
 * are placed right after the fixed header, backing first.  Validates
 * first; returns 0 or -1 after qad_error.
 */
extern int addcow_build_header (const struct addcow_header *h, void *buf,
                                const char *file);

extern void addcow_header_free (struct addcow_header *h);

/* Fill in a header for a new sidecar with default values; the
 * caller's strings are copied.  BACKING may be NULL.  Returns 0 or -1.
 */
extern int addcow_header_init (struct addcow_header *h, uint32_t cluster_bits,
                               const char *image, const char *image_format,
                               const char *backing,
                               const char *backing_format);

/* Bitmap geometry.  The number of clusters covering DISK_SIZE bytes,
 * and the bitmap length in bytes (rounded up to a whole cluster).
 */
static inline uint64_t
addcow_nr_clusters (uint64_t disk_size, uint32_t cluster_bits)
{
  uint64_t cs = UINT64_C (1) << cluster_bits;
  return disk_size / cs + (disk_size % cs != 0);
}

static inline uint64_t
addcow_bitmap_size (uint64_t disk_size, uint32_t cluster_bits)
{
  uint64_t cs = UINT64_C (1) << cluster_bits;
  uint64_t n = addcow_nr_clusters (disk_size, cluster_bits);
  uint64_t bytes = n / 8 + (n % 8 != 0);
  return (bytes + cs - 1) & ~(cs - 1);
}

/* Bit k of byte j is cluster 8j+k: scan it with lsb-bits.h. */

/* A name is an NBD URI (not a file) when it starts with nbd:// ,
 * nbd+unix:// , nbds:// , nbds+unix:// , nbd+vsock:// , nbds+vsock:// .
 */
extern bool addcow_name_is_uri (const char *name);

/* The defined format values (spec section 4): "raw" or "qed" for the
 * backing file, "raw" for the image.  Any other value is invalid.
 */
extern bool addcow_backing_format_defined (const char *format);
extern bool addcow_image_format_defined (const char *format);

/* The creation policy shared by every writer (the filter, qad-img):
 * the backing format to record for BACKING (a path or an NBD URI) when
 * the user said FORMAT (NULL: nothing).  Formats are never probed; a
 * file that starts with a known image header needs FORMAT, and NBD
 * backings are raw.  OPTION names the parameter in messages.  Returns
 * a static string, or NULL after qad_error naming the file and what
 * was found.
 */
extern const char *addcow_choose_backing_format (const char *backing,
                                                 const char *format,
                                                 const char *option);

/* The cluster-size policy for a new file: SIZE (the user's VALUE for
 * OPTION, parsed) must be a power of 2 from 4K to 2M; without one a new
 * file gets ADDCOW_DEFAULT_CLUSTER_BITS.  Sets *BITS and returns 0, or
 * -1 after qad_error naming OPTION and VALUE.
 */
extern int addcow_cluster_bits_for (uint64_t size, const char *option,
                                    const char *value, uint32_t *bits);

/* The backing policy for a new file, for the filter and qad-img alike:
 * BACKING (a path or NBD URI; NULL: none) and the user's FORMAT (NULL:
 * not given) give *BFMT, the format to record (NULL without a backing;
 * see addcow_choose_backing_format), and temporary sockets are refused
 * (addcow_refuse_temporary_uri).  A format without a backing is an
 * error.  The options name the parameters in messages.  0, or -1 after
 * qad_error.
 */
extern int addcow_creation_backing (const char *backing, const char *format,
                                    const char *backing_option,
                                    const char *format_option,
                                    const char **bfmt);

/* True when the NBD URI names a Unix socket in a directory that lives
 * only as long as one server: "nbdkit -U -" (nbdkitXXXXXX/socket) or
 * libnbd's socket activation (libnbdXXXXXX/sock).  A sidecar that
 * records such a URI could never be reopened.
 */
extern bool addcow_uri_is_temporary (const char *uri);

/* The creation policy for NBD backings: -1 after qad_error when
 * BACKING is a temporary socket (addcow_uri_is_temporary), else 0.
 */
extern int addcow_refuse_temporary_uri (const char *backing);

/* Resolve NAME (from the header) relative to the directory holding
 * the sidecar SIDECAR.  Absolute names and URIs are returned as they
 * are.  Returns a malloc'd string or NULL (qad_error) on ENOMEM.
 */
extern char *addcow_resolve_name (const char *sidecar, const char *name);

/* The inverse, for recording a name at creation: PATH relative to the
 * sidecar's directory when it lies inside it, else PATH made
 * absolute.  URIs are kept.  Returns malloc'd string or NULL.
 */
extern char *addcow_relative_name (const char *sidecar, const char *path);

#endif /* QAD_ADDCOW_H */
