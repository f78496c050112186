/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design:
 *
 * Validation never trusts a field before checking it: sizes are
 * checked to be powers of 2 in range before any shift, products use
 * checked arithmetic, and the maximum image size is computed in log2
 * space so that it cannot wrap (QEMU's product wraps for clusters of
 * 4 MiB and more and then refuses valid images).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "byte-swapping.h"
#include "checked-overflow.h"
#include "ispowerof2.h"
#include "qad-error.h"
#include "qed-header.h"

void
qed_header_decode (const void *buf, struct qed_header *h)
{
  const unsigned char *p = buf;

  h->cluster_size = load_le32 (p + QED_OFF_CLUSTER_SIZE);
  h->table_size = load_le32 (p + QED_OFF_TABLE_SIZE);
  h->header_size = load_le32 (p + QED_OFF_HEADER_SIZE);
  h->features = load_le64 (p + QED_OFF_FEATURES);
  h->compat_features = load_le64 (p + QED_OFF_COMPAT_FEATURES);
  h->autoclear_features = load_le64 (p + QED_OFF_AUTOCLEAR_FEATURES);
  h->l1_table_offset = load_le64 (p + QED_OFF_L1_TABLE_OFFSET);
  h->image_size = load_le64 (p + QED_OFF_IMAGE_SIZE);
  h->backing_name_offset = load_le32 (p + QED_OFF_BACKING_NAME_OFFSET);
  h->backing_name_size = load_le32 (p + QED_OFF_BACKING_NAME_SIZE);
}

void
qed_header_encode (const struct qed_header *h, void *buf)
{
  unsigned char *p = buf;

  memcpy (p + QED_OFF_MAGIC, QED_MAGIC, 4);
  store_le32 (p + QED_OFF_CLUSTER_SIZE, h->cluster_size);
  store_le32 (p + QED_OFF_TABLE_SIZE, h->table_size);
  store_le32 (p + QED_OFF_HEADER_SIZE, h->header_size);
  store_le64 (p + QED_OFF_FEATURES, h->features);
  store_le64 (p + QED_OFF_COMPAT_FEATURES, h->compat_features);
  store_le64 (p + QED_OFF_AUTOCLEAR_FEATURES, h->autoclear_features);
  store_le64 (p + QED_OFF_L1_TABLE_OFFSET, h->l1_table_offset);
  store_le64 (p + QED_OFF_IMAGE_SIZE, h->image_size);
  store_le32 (p + QED_OFF_BACKING_NAME_OFFSET, h->backing_name_offset);
  store_le32 (p + QED_OFF_BACKING_NAME_SIZE, h->backing_name_size);
}

int
qed_backing_format_features (const char *filename, const char *format,
                             uint64_t *features)
{
  if (format && strcmp (format, "raw") != 0 && strcmp (format, "qed") != 0) {
    qad_error ("%s: backing format must be raw or qed, not %s",
               filename, format);
    errno = EINVAL;
    return -1;
  }
  *features = QED_F_BACKING_FILE;
  if (format && strcmp (format, "raw") == 0)
    *features |= QED_F_BACKING_FORMAT_NO_PROBE;
  return 0;
}

const char *
qed_recorded_backing_format (const struct qed_header *h)
{
  return h->features & QED_F_BACKING_FORMAT_NO_PROBE ? "raw" : NULL;
}

bool
qed_probe_magic (const void *buf, size_t len)
{
  return len >= 4 && memcmp (buf, QED_MAGIC, 4) == 0;
}

bool
qed_file_has_magic (const char *path)
{
  unsigned char magic[4];
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  bool r = false;

  if (fd >= 0) {
    r = pread (fd, magic, sizeof magic, 0) == (ssize_t) sizeof magic &&
      qed_probe_magic (magic, sizeof magic);
    close (fd);
  }
  return r;
}

uint64_t
qed_max_image_size (uint32_t cluster_size, uint32_t table_size)
{
  unsigned cluster_bits, entry_bits, total_bits;

  if (!is_power_of_2 (cluster_size) || !is_power_of_2 (table_size))
    return 0;
  /* entries per table = table_size * cluster_size / 8 */
  cluster_bits = log_2_bits (cluster_size);
  entry_bits = log_2_bits (table_size) + cluster_bits - 3;
  /* max = entries^2 * cluster_size */
  total_bits = 2 * entry_bits + cluster_bits;
  if (total_bits >= 64)
    return UINT64_MAX;
  return UINT64_C (1) << total_bits;
}

char *
qed_features_string (uint64_t features, char *buf, size_t n)
{
  static const struct { uint64_t bit; const char *name; } names[] = {
    { QED_F_BACKING_FILE, "backing_file" },
    { QED_F_NEED_CHECK, "need_check" },
    { QED_F_BACKING_FORMAT_NO_PROBE, "backing_format_no_probe" },
  };
  size_t i, len = 0;

  if (n == 0)
    return buf;
  buf[0] = '\0';
  for (i = 0; i < sizeof names / sizeof names[0]; ++i) {
    if (features & names[i].bit) {
      len += snprintf (buf + len, len < n ? n - len : 0, "%s%s",
                       len ? "|" : "", names[i].name);
      features &= ~names[i].bit;
    }
  }
  if (features)
    len += snprintf (buf + len, len < n ? n - len : 0, "%s0x%" PRIx64,
                     len ? "|" : "", features);
  if (len == 0)
    snprintf (buf, n, "none");
  return buf;
}

int
qed_header_validate (const char *filename, const struct qed_header *h,
                     uint64_t file_size, struct qed_geometry *g)
{
  uint64_t table_end;

  if (!is_power_of_2 (h->cluster_size) ||
      h->cluster_size < QED_MIN_CLUSTER_SIZE ||
      h->cluster_size > QED_MAX_CLUSTER_SIZE) {
    qad_error ("%s: invalid QED header: cluster_size=%" PRIu32
               " (must be a power of 2 from %" PRIu32 " to %" PRIu32 ")",
               filename, h->cluster_size,
               QED_MIN_CLUSTER_SIZE, QED_MAX_CLUSTER_SIZE);
    goto einval;
  }
  if (!is_power_of_2 (h->table_size) ||
      h->table_size < QED_MIN_TABLE_SIZE ||
      h->table_size > QED_MAX_TABLE_SIZE) {
    qad_error ("%s: invalid QED header: table_size=%" PRIu32
               " (must be a power of 2 from %d to %d)",
               filename, h->table_size,
               QED_MIN_TABLE_SIZE, QED_MAX_TABLE_SIZE);
    goto einval;
  }

  g->cluster_size = h->cluster_size;
  g->cluster_bits = log_2_bits (h->cluster_size);
  g->table_bytes = (uint64_t) h->table_size * h->cluster_size;
  g->table_entries = g->table_bytes / sizeof (uint64_t);
  g->table_bits = log_2_bits (g->table_entries);
  g->max_image_size = qed_max_image_size (h->cluster_size, h->table_size);

  if (h->header_size == 0 ||
      MUL_OVERFLOW ((uint64_t) h->header_size, g->cluster_size,
                    &g->header_bytes) ||
      g->header_bytes > file_size) {
    qad_error ("%s: invalid QED header: header_size=%" PRIu32
               " clusters (must be at least 1 and the header area must fit "
               "in the file of %" PRIu64 " bytes)",
               filename, h->header_size, file_size);
    goto einval;
  }

  if (h->features & ~QED_FEATURE_MASK) {
    qad_error ("%s: unsupported QED features=0x%" PRIx64
               " (unknown bits 0x%" PRIx64 "): refusing to open",
               filename, h->features, h->features & ~QED_FEATURE_MASK);
    errno = ENOTSUP;
    return -1;
  }

  if (h->image_size % 512 != 0) {
    qad_error ("%s: invalid QED header: image_size=%" PRIu64
               " (must be a multiple of 512)", filename, h->image_size);
    goto einval;
  }
  if (h->image_size > g->max_image_size) {
    qad_error ("%s: invalid QED header: image_size=%" PRIu64
               " exceeds the maximum %" PRIu64 " for cluster_size=%" PRIu32
               " table_size=%" PRIu32,
               filename, h->image_size, g->max_image_size,
               h->cluster_size, h->table_size);
    goto einval;
  }

  if (h->l1_table_offset % g->cluster_size != 0 ||
      h->l1_table_offset < g->header_bytes ||
      ADD_OVERFLOW (h->l1_table_offset, g->table_bytes, &table_end) ||
      table_end > file_size) {
    qad_error ("%s: invalid QED header: l1_table_offset=%" PRIu64
               " (must be cluster-aligned, at or past the header area of %"
               PRIu64 " bytes, with the %" PRIu64 "-byte table inside the "
               "file of %" PRIu64 " bytes)",
               filename, h->l1_table_offset, g->header_bytes,
               g->table_bytes, file_size);
    goto einval;
  }

  if (h->features & QED_F_BACKING_FILE) {
    uint64_t name_end = (uint64_t) h->backing_name_offset +
      h->backing_name_size;

    if (h->backing_name_size == 0 ||
        h->backing_name_size > QED_MAX_BACKING_NAME ||
        h->backing_name_offset < QED_HEADER_BYTES ||
        name_end > g->header_bytes) {
      qad_error ("%s: invalid QED header: backing_filename_offset=%" PRIu32
                 " backing_filename_size=%" PRIu32 " (the name must be 1 to %d"
                 " bytes, after the %d-byte header and inside the header "
                 "area of %" PRIu64 " bytes)",
                 filename, h->backing_name_offset, h->backing_name_size,
                 QED_MAX_BACKING_NAME, QED_HEADER_BYTES, g->header_bytes);
      goto einval;
    }
  }

  return 0;

 einval:
  errno = EINVAL;
  return -1;
}
