/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Notes on the design.
 *
 * Every field of the header is range-checked before it is used, with
 * overflow-checked arithmetic: the names' offsets and sizes come from
 * the file and are only trusted once [offset, offset+size) is known to
 * lie inside the header area that the caller actually read.  Nothing
 * here asserts on a value read from a file; every problem becomes one
 * qad_error naming the file, the field and the value.
 *
 * The parser is strict (the spec says "all other header bytes are 0",
 * names may not overlap each other or contain NUL), because this is
 * the reference implementation: files we accept are files every other
 * implementation must accept too.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addcow.h"
#include "byte-swapping.h"
#include "checked-overflow.h"
#include "ispowerof2.h"
#include "qad-error.h"

#define BAD(...) do { qad_error (__VA_ARGS__); errno = EINVAL; return -1; } \
  while (0)

void
addcow_header_free (struct addcow_header *h)
{
  free (h->backing_file);
  free (h->image_file);
  h->backing_file = h->image_file = NULL;
}

/* A format field: printable ASCII, zero-padded on the right.  Copies
 * it NUL-terminated into OUT.  Returns 0 or -1.
 */
static int
parse_format (const uint8_t *p, const char *file, const char *field,
              char *out)
{
  size_t i, len = 0;

  while (len < ADDCOW_FORMAT_LEN && p[len] != 0)
    len++;
  for (i = 0; i < len; ++i)
    if (p[i] < 0x21 || p[i] > 0x7e)
      BAD ("%s: add-cow header: %s contains byte 0x%02x at position %zu "
           "(must be printable ASCII)", file, field, p[i], i);
  for (i = len; i < ADDCOW_FORMAT_LEN; ++i)
    if (p[i] != 0)
      BAD ("%s: add-cow header: %s is not zero-padded "
           "(byte 0x%02x at position %zu after the end of the name)",
           file, field, p[i], i);
  memcpy (out, p, len);
  out[len] = '\0';
  return 0;
}

/* Check one name's offset and size; a name of size 0 with offset 0
 * means "none" (allowed only when OPTIONAL).
 */
static int
check_name (uint32_t off, uint32_t size, uint32_t header_size,
            bool optional, const char *file, const char *what)
{
  if (off == 0 && size == 0) {
    if (optional)
      return 0;
    BAD ("%s: add-cow header: %s name offset is 0 "
         "(an image file name is required)", file, what);
  }
  if (off == 0)
    BAD ("%s: add-cow header: %s name offset is 0 but its size is %" PRIu32
         " (both must be 0 or both non-zero)", file, what, size);
  if (size == 0)
    BAD ("%s: add-cow header: %s name size is 0 but its offset is %" PRIu32
         " (both must be 0 or both non-zero)", file, what, off);
  if (off < ADDCOW_FIXED_HEADER || off > header_size - 1)
    BAD ("%s: add-cow header: %s name offset %" PRIu32 " is outside "
         "[%d, %" PRIu32 "] (HEADER_SIZE=%" PRIu32 ")",
         file, what, off, ADDCOW_FIXED_HEADER, header_size - 1, header_size);
  if (!range_within (off, size, header_size))
    BAD ("%s: add-cow header: %s name (offset %" PRIu32 ", size %" PRIu32
         ") extends past HEADER_SIZE=%" PRIu32,
         file, what, off, size, header_size);
  return 0;
}

bool
addcow_backing_format_defined (const char *format)
{
  return strcmp (format, "raw") == 0 || strcmp (format, "qed") == 0;
}

bool
addcow_image_format_defined (const char *format)
{
  return strcmp (format, "raw") == 0;
}

/* Headers of formats a raw backing file must not be mistaken for. */
static const struct {
  const char *name;
  const char *magic;
  size_t len;
} known_headers[] = {
  { "QED", "QED\0", 4 },
  { "qcow2", "QFI\xfb", 4 },
  { "VMDK", "KDMV", 4 },
  { "VHDX", "vhdxfile", 8 },
  { "LUKS", "LUKS\xba\xbe", 6 },
  { "add-cow", ADDCOW_MAGIC, 4 },
};

const char *
addcow_choose_backing_format (const char *backing, const char *format,
                              const char *option)
{
  unsigned char buf[8];
  ssize_t r;
  size_t i;
  int fd;

  if (format) {
    if (!addcow_backing_format_defined (format)) {
      qad_error ("%s=%s: the backing format must be raw or qed",
                 option, format);
      return NULL;
    }
    if (addcow_name_is_uri (backing) && strcmp (format, "raw") != 0) {
      qad_error ("%s=%s: an NBD backing (%s) must have format raw, not %s",
                 option, format, backing, format);
      return NULL;
    }
    return strcmp (format, "raw") == 0 ? "raw" : "qed";
  }
  if (addcow_name_is_uri (backing))
    return "raw";
  fd = open (backing, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    qad_error ("%s: %m", backing);
    return NULL;
  }
  r = pread (fd, buf, sizeof buf, 0);
  close (fd);
  for (i = 0; r > 0 && i < sizeof known_headers / sizeof known_headers[0];
       ++i) {
    if ((size_t) r >= known_headers[i].len &&
        memcmp (buf, known_headers[i].magic, known_headers[i].len) == 0) {
      if (strcmp (known_headers[i].name, "QED") == 0)
        qad_error ("%s: the backing file starts with a QED header; formats "
                   "are never probed: say %s=qed (or %s=raw if it really "
                   "is raw data)", backing, option, option);
      else
        qad_error ("%s: the backing file starts with a %s header, which "
                   "add-cow cannot read (formats are never probed): convert "
                   "it to raw or QED, or say %s=raw if it really is raw "
                   "data", backing, known_headers[i].name, option);
      return NULL;
    }
  }
  return "raw";
}

/* Refuse incompatible feature bits this implementation does not know. */
static int
check_features (uint64_t features, const char *file)
{
  if (features & ~ADDCOW_FEATURES_KNOWN)
    BAD ("%s: add-cow header: unknown incompatible feature bits 0x%" PRIx64
         " are set (this implementation knows 0x%" PRIx64
         ", BACKING_SUPPLIED)", file, features & ~ADDCOW_FEATURES_KNOWN,
         ADDCOW_FEATURES_KNOWN);
  return 0;
}

int
addcow_validate_header (const struct addcow_header *h, const char *file)
{
  size_t names;

  if (h->cluster_bits < ADDCOW_MIN_CLUSTER_BITS ||
      h->cluster_bits > ADDCOW_MAX_CLUSTER_BITS)
    BAD ("%s: add-cow header: cluster_bits is %" PRIu32
         " (must be %d..%d)", file, h->cluster_bits,
         ADDCOW_MIN_CLUSTER_BITS, ADDCOW_MAX_CLUSTER_BITS);
  if (h->header_size != addcow_header_size_for (h->cluster_bits))
    BAD ("%s: add-cow header: HEADER_SIZE is %" PRIu32 " (must be %" PRIu32
         " for cluster_bits %" PRIu32 ")", file, h->header_size,
         addcow_header_size_for (h->cluster_bits), h->cluster_bits);
  if (check_features (h->features, file) == -1)
    return -1;
  if (addcow_backing_supplied (h) &&
      (h->backing_file == NULL || strcmp (h->backing_format, "raw") != 0))
    BAD ("%s: add-cow header: BACKING_SUPPLIED is set, so a backing label "
         "and the backing format \"raw\" are required (found %s, \"%s\")",
         file, h->backing_file ? "a label" : "no label", h->backing_format);
  if (h->image_file == NULL || h->image_file[0] == '\0')
    BAD ("%s: add-cow header: image file name is empty", file);
  if (!addcow_image_format_defined (h->image_format))
    BAD ("%s: add-cow header: image file format \"%s\" is not defined "
         "(the only defined value is \"raw\")", file, h->image_format);
  if (h->backing_file) {
    if (h->backing_file[0] == '\0')
      BAD ("%s: add-cow header: backing file name is empty", file);
    if (!addcow_backing_format_defined (h->backing_format))
      BAD ("%s: add-cow header: backing file format \"%s\" is %s "
           "(required when there is a backing file, never probed; "
           "defined values: \"raw\", \"qed\")", file, h->backing_format,
           h->backing_format[0] ? "not defined" : "missing");
    if (strcmp (h->backing_file, h->image_file) == 0)
      BAD ("%s: add-cow header: image and backing file names are both "
           "\"%s\" (they must differ)", file, h->image_file);
  }
  else if (h->backing_format[0] != '\0')
    BAD ("%s: add-cow header: backing file format is \"%s\" "
         "but there is no backing file", file, h->backing_format);

  names = strlen (h->image_file) +
    (h->backing_file ? strlen (h->backing_file) : 0);
  if (names > h->header_size - ADDCOW_FIXED_HEADER)
    BAD ("%s: add-cow header: names too long (%zu bytes; at most %" PRIu32
         " fit in HEADER_SIZE=%" PRIu32 ")", file, names,
         h->header_size - ADDCOW_FIXED_HEADER, h->header_size);
  return 0;
}

static char *
copy_name (const uint8_t *p, uint32_t size, const char *file,
           const char *what)
{
  char *s;

  if (memchr (p, 0, size) != NULL) {
    qad_error ("%s: add-cow header: %s name contains a NUL byte", file, what);
    errno = EINVAL;
    return NULL;
  }
  s = malloc (size + 1);
  if (s == NULL) {
    qad_error ("%s: %m", file);
    return NULL;
  }
  memcpy (s, p, size);
  s[size] = '\0';
  return s;
}

int
addcow_parse_header (const void *vbuf, size_t len, const char *file,
                     struct addcow_header *h)
{
  const uint8_t *buf = vbuf;
  uint32_t boff, bsize, ioff, isize, hs;
  size_t i;

  memset (h, 0, sizeof *h);
  if (len < ADDCOW_FIXED_HEADER)
    BAD ("%s: add-cow header truncated: file is %zu bytes, the fixed "
         "header needs %d", file, len, ADDCOW_FIXED_HEADER);
  if (memcmp (buf, ADDCOW_MAGIC, 4) != 0)
    BAD ("%s: add-cow header: bad magic %02x %02x %02x %02x "
         "(expected \"ACOW\")", file, buf[0], buf[1], buf[2], buf[3]);

  h->cluster_bits = load_le32 (buf + ADDCOW_OFF_CLUSTER_BITS);
  h->header_size = hs = load_le32 (buf + ADDCOW_OFF_HEADER_SIZE);
  h->features = load_le64 (buf + ADDCOW_OFF_FEATURES);
  h->compat_features = load_le64 (buf + ADDCOW_OFF_COMPAT_FEATURES);

  /* Order matters: the names can only be checked once HEADER_SIZE is
   * known good, and HEADER_SIZE only once cluster_bits is.
   */
  if (h->cluster_bits < ADDCOW_MIN_CLUSTER_BITS ||
      h->cluster_bits > ADDCOW_MAX_CLUSTER_BITS)
    BAD ("%s: add-cow header: cluster_bits is %" PRIu32
         " (must be %d..%d)", file, h->cluster_bits,
         ADDCOW_MIN_CLUSTER_BITS, ADDCOW_MAX_CLUSTER_BITS);
  if (hs != addcow_header_size_for (h->cluster_bits))
    BAD ("%s: add-cow header: HEADER_SIZE is %" PRIu32 " (must be %" PRIu32
         " for cluster_bits %" PRIu32 ")", file, hs,
         addcow_header_size_for (h->cluster_bits), h->cluster_bits);
  if (check_features (h->features, file) == -1)
    return -1;
  if (len < hs)
    BAD ("%s: add-cow header truncated: file is %zu bytes, HEADER_SIZE is %"
         PRIu32, file, len, hs);

  boff = load_le32 (buf + ADDCOW_OFF_BACKING_NAME_OFFSET);
  bsize = load_le32 (buf + ADDCOW_OFF_BACKING_NAME_SIZE);
  ioff = load_le32 (buf + ADDCOW_OFF_IMAGE_NAME_OFFSET);
  isize = load_le32 (buf + ADDCOW_OFF_IMAGE_NAME_SIZE);
  if (check_name (boff, bsize, hs, true, file, "backing file") == -1 ||
      check_name (ioff, isize, hs, false, file, "image file") == -1)
    return -1;
  if (boff != 0 && boff < ioff + isize && ioff < boff + bsize)
    BAD ("%s: add-cow header: backing file name [%" PRIu32 ", +%" PRIu32
         ") overlaps image file name [%" PRIu32 ", +%" PRIu32 ")",
         file, boff, bsize, ioff, isize);

  if (parse_format (buf + ADDCOW_OFF_BACKING_FORMAT, file,
                    "backing file format", h->backing_format) == -1 ||
      parse_format (buf + ADDCOW_OFF_IMAGE_FORMAT, file,
                    "image file format", h->image_format) == -1)
    return -1;

  /* Every byte of the header area that is not a field or a name is 0. */
  for (i = ADDCOW_FIXED_HEADER; i < hs; ++i) {
    if (i >= ioff && i < (size_t) ioff + isize) {
      i = (size_t) ioff + isize - 1;
      continue;
    }
    if (boff && i >= boff && i < (size_t) boff + bsize) {
      i = (size_t) boff + bsize - 1;
      continue;
    }
    if (buf[i] != 0)
      BAD ("%s: add-cow header: reserved header byte at offset %zu is 0x%02x "
           "(must be 0)", file, i, buf[i]);
  }

  if (boff) {
    h->backing_file = copy_name (buf + boff, bsize, file, "backing file");
    if (h->backing_file == NULL)
      goto err;
  }
  h->image_file = copy_name (buf + ioff, isize, file, "image file");
  if (h->image_file == NULL)
    goto err;
  if (addcow_validate_header (h, file) == -1)
    goto err;
  return 0;

 err:
  addcow_header_free (h);
  return -1;
}

int
addcow_header_init (struct addcow_header *h, uint32_t cluster_bits,
                    const char *image, const char *image_format,
                    const char *backing, const char *backing_format)
{
  memset (h, 0, sizeof *h);
  h->cluster_bits = cluster_bits;
  h->header_size = addcow_header_size_for (cluster_bits);
  if (strlen (image_format) > ADDCOW_FORMAT_LEN ||
      (backing_format && strlen (backing_format) > ADDCOW_FORMAT_LEN)) {
    qad_error ("add-cow: format name longer than %d bytes",
               ADDCOW_FORMAT_LEN);
    errno = EINVAL;
    return -1;
  }
  strcpy (h->image_format, image_format);
  if (backing_format)
    strcpy (h->backing_format, backing_format);
  h->image_file = strdup (image);
  if (h->image_file == NULL)
    goto enomem;
  if (backing) {
    h->backing_file = strdup (backing);
    if (h->backing_file == NULL)
      goto enomem;
  }
  return 0;

 enomem:
  qad_error ("add-cow: %m");
  addcow_header_free (h);
  return -1;
}

int
addcow_build_header (const struct addcow_header *h, void *vbuf,
                     const char *file)
{
  uint8_t *buf = vbuf;
  uint32_t off = ADDCOW_FIXED_HEADER;
  size_t n;

  if (addcow_validate_header (h, file) == -1)
    return -1;
  memset (buf, 0, h->header_size);
  memcpy (buf, ADDCOW_MAGIC, 4);
  if (h->backing_file) {
    n = strlen (h->backing_file);
    store_le32 (buf + ADDCOW_OFF_BACKING_NAME_OFFSET, off);
    store_le32 (buf + ADDCOW_OFF_BACKING_NAME_SIZE, n);
    memcpy (buf + off, h->backing_file, n);
    off += n;
    memcpy (buf + ADDCOW_OFF_BACKING_FORMAT, h->backing_format,
            strlen (h->backing_format));
  }
  n = strlen (h->image_file);
  store_le32 (buf + ADDCOW_OFF_IMAGE_NAME_OFFSET, off);
  store_le32 (buf + ADDCOW_OFF_IMAGE_NAME_SIZE, n);
  memcpy (buf + off, h->image_file, n);
  store_le32 (buf + ADDCOW_OFF_CLUSTER_BITS, h->cluster_bits);
  store_le64 (buf + ADDCOW_OFF_FEATURES, h->features);
  store_le64 (buf + ADDCOW_OFF_COMPAT_FEATURES, h->compat_features);
  store_le32 (buf + ADDCOW_OFF_HEADER_SIZE, h->header_size);
  memcpy (buf + ADDCOW_OFF_IMAGE_FORMAT, h->image_format,
          strlen (h->image_format));
  return 0;
}

bool
addcow_name_is_uri (const char *name)
{
  static const char *const schemes[] = {
    "nbd://", "nbds://", "nbd+unix://", "nbds+unix://",
    "nbd+vsock://", "nbds+vsock://", NULL
  };
  size_t i;

  for (i = 0; schemes[i]; ++i)
    if (strncmp (name, schemes[i], strlen (schemes[i])) == 0)
      return true;
  return false;
}

bool
addcow_uri_is_temporary (const char *uri)
{
  static const char *const prefixes[] = { "nbdkit", "libnbd", NULL };
  const char *q, *sock, *end, *slash, *dir;
  size_t i, j, len;

  if (!addcow_name_is_uri (uri) || (q = strchr (uri, '?')) == NULL)
    return false;
  /* The socket= parameter of the query string. */
  for (sock = q + 1; sock && strncmp (sock, "socket=", 7) != 0; ) {
    sock = strchr (sock, '&');
    if (sock)
      sock++;
  }
  if (sock == NULL)
    return false;
  sock += 7;
  end = sock + strcspn (sock, "&#");
  /* The last directory component before the socket's name. */
  for (slash = end; slash > sock && slash[-1] != '/'; --slash)
    ;
  if (slash <= sock + 1)
    return false;
  for (dir = slash - 1; dir > sock && dir[-1] != '/'; --dir)
    ;
  len = slash - 1 - dir;
  for (i = 0; prefixes[i]; ++i) {
    size_t plen = strlen (prefixes[i]);
    if (len != plen + 6 || strncmp (dir, prefixes[i], plen) != 0)
      continue;
    for (j = plen; j < len && isalnum ((unsigned char) dir[j]); ++j)
      ;
    if (j == len)
      return true;
  }
  return false;
}

int
addcow_refuse_temporary_uri (const char *backing)
{
  if (!addcow_uri_is_temporary (backing))
    return 0;
  qad_error ("%s: a temporary socket (made by \"nbdkit -U -\" or a "
             "captive libnbd server) that disappears with its server: an "
             "add-cow file recording it could never be reopened; serve the "
             "backing file on a socket path of your own "
             "(nbdkit -U /path/to/sock)", backing);
  errno = EINVAL;
  return -1;
}

int
addcow_cluster_bits_for (uint64_t size, const char *option,
                         const char *value, uint32_t *bits)
{
  if (!is_power_of_2 (size) ||
      size < (UINT64_C (1) << ADDCOW_MIN_CLUSTER_BITS) ||
      size > (UINT64_C (1) << ADDCOW_MAX_CLUSTER_BITS)) {
    qad_error ("%s=%s: must be a power of 2 between 4K and 2M",
               option, value);
    errno = EINVAL;
    return -1;
  }
  *bits = log_2_bits (size);
  return 0;
}

int
addcow_creation_backing (const char *backing, const char *format,
                         const char *backing_option,
                         const char *format_option, const char **bfmt)
{
  *bfmt = NULL;
  if (backing == NULL) {
    if (format == NULL)
      return 0;
    qad_error ("%s=%s needs %s", format_option, format, backing_option);
    errno = EINVAL;
    return -1;
  }
  *bfmt = addcow_choose_backing_format (backing, format, format_option);
  if (*bfmt == NULL || addcow_refuse_temporary_uri (backing) == -1)
    return -1;
  return 0;
}

/* The directory part of PATH ("." when there is none), malloc'd. */
static char *
dir_of (const char *path)
{
  const char *slash = strrchr (path, '/');

  if (slash == NULL)
    return strdup (".");
  if (slash == path)
    return strdup ("/");
  return strndup (path, slash - path);
}

char *
addcow_resolve_name (const char *sidecar, const char *name)
{
  char *dir, *ret;

  if (name[0] == '/' || addcow_name_is_uri (name)) {
    ret = strdup (name);
    if (ret == NULL)
      qad_error ("%s: %m", sidecar);
    return ret;
  }
  dir = dir_of (sidecar);
  if (dir == NULL || asprintf (&ret, "%s%s%s", dir,
                                 strcmp (dir, "/") == 0 ? "" : "/",
                                 name) == -1) {
    qad_error ("%s: %m", sidecar);
    ret = NULL;
  }
  free (dir);
  return ret;
}

char *
addcow_relative_name (const char *sidecar, const char *path)
{
  char *sdir = NULL, *pdir = NULL, *sreal = NULL, *preal = NULL;
  const char *base;
  char *ret = NULL;

  if (addcow_name_is_uri (path))
    return strdup (path);
  base = strrchr (path, '/');
  base = base ? base + 1 : path;
  sdir = dir_of (sidecar);
  pdir = dir_of (path);
  if (sdir == NULL || pdir == NULL)
    goto out;
  sreal = realpath (sdir, NULL);
  preal = realpath (pdir, NULL);
  if (sreal && preal && *base) {
    if (strcmp (sreal, preal) == 0)
      ret = strdup (base);
    else if (asprintf (&ret, "%s%s%s", preal,
                       strcmp (preal, "/") == 0 ? "" : "/", base) == -1)
      ret = NULL;
  }
  else
    ret = strdup (path);        /* directory missing: keep it as given */
 out:
  if (ret == NULL)
    qad_error ("%s: %m", sidecar);
  free (sdir);
  free (pdir);
  free (sreal);
  free (preal);
  return ret;
}
