/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "minmax.h"
#include "qad-img.h"
#include "qed-image.h"

bool qad_force;
bool qad_progress;

void
print_progress (void *opaque, uint64_t done, uint64_t total)
{
  /* As qemu-img -p: one line rewritten in place, ended at 100%. */
  printf ("    (%.2f/100%%)\r", total ? 100.0 * done / total : 100.0);
  if (done >= total)
    printf ("\n");
  fflush (stdout);
}

ssize_t
read_magic (const char *file, unsigned char magic[4], bool quiet)
{
  ssize_t r;
  int fd;

  memset (magic, 0, 4);
  fd = open (file, O_RDONLY | O_CLOEXEC);
  if (fd == -1) {
    if (!quiet)
      fprintf (stderr, "qad-img: %s: %s\n", file, strerror (errno));
    return -1;
  }
  r = pread (fd, magic, 4, 0);
  close (fd);
  return r < 0 ? 0 : r;
}

const struct qad_format *
format_of_magic (const unsigned char magic[4], ssize_t len)
{
  size_t i;

  for (i = 0; len == 4 && qad_formats[i]; ++i)
    if (memcmp (qad_formats[i]->magic, magic, 4) == 0)
      return qad_formats[i];
  return NULL;
}

int
refuse_existing (const char *file, bool force)
{
  unsigned char magic[4];
  const struct qad_format *f = NULL;
  const char *what;
  struct stat st;

  if (force || lstat (file, &st) == -1)
    return 0;
  if (S_ISREG (st.st_mode))
    f = format_of_magic (magic, read_magic (file, magic, true));
  if (!S_ISREG (st.st_mode))
    what = "not a regular file";
  else if (f == &qed_format)
    what = "a QED image";
  else if (f == &addcow_format)
    what = "an add-cow file";
  else if (f == &qdb_format)
    what = "a QDB file";
  else
    what = "a file of another format";
  fprintf (stderr, "qad-img: %s: already exists (%s, %" PRIu64 " bytes); "
           "not replacing it without --force\n", file, what,
           (uint64_t) st.st_size);
  return -1;
}

enum qad_backing_policy tool_backing_policy = QAD_BACKING_FOLLOW;
const char *tool_backing_dir;

int
tool_backing_rules (const char *file, struct qad_backing_rules *r)
{
  return qad_backing_rules_init (r, tool_backing_policy, tool_backing_dir,
                                 file);
}

int
parse_size (const char *what, const char *str, unsigned long long *ret)
{
  char *end;
  unsigned long long v, mult = 1, frac = 0, frac_div = 1;
  unsigned shift = 0;
  bool has_frac = false;

  errno = 0;
  if (!isdigit ((unsigned char) str[0]))
    goto bad;
  v = strtoull (str, &end, 10);
  if (errno != 0)
    goto bad;
  if (*end == '.') {
    /* A fraction: up to 18 digits kept (finer than a byte of an
     * exbibyte), the rest ignored.
     */
    has_frac = true;
    end++;
    if (!isdigit ((unsigned char) *end))
      goto bad;
    for (; isdigit ((unsigned char) *end); end++)
      if (frac_div < 1000000000000000000ULL) {
        frac = frac * 10 + (*end - '0');
        frac_div *= 10;
      }
  }
  switch (*end) {
  case '\0': break;
  case 'b': case 'B': end++; break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  case 't': case 'T': shift = 40; end++; break;
  case 'p': case 'P': shift = 50; end++; break;
  case 'e': case 'E': shift = 60; end++; break;
  default: goto bad;
  }
  /* Accept "64K", "64KiB" and "64KB". */
  if (shift && (strcmp (end, "iB") == 0 || strcmp (end, "B") == 0))
    end += strlen (end);
  if (*end != '\0')
    goto bad;
  if (has_frac && shift == 0) {
    fprintf (stderr, "qad-img: %s: a fraction needs a unit suffix "
             "(K, M, G, ...): %s\n", what, str);
    return -1;
  }
  mult = 1ULL << shift;
  if (v > UINT64_MAX / mult) {
    fprintf (stderr, "qad-img: %s: value too large: %s\n", what, str);
    return -1;
  }
  v *= mult;
  if (has_frac) {
    /* frac / frac_div * 2^shift, rounded down: frac < 10^18 < 2^60
     * and shift <= 60, so the product fits in 128 bits.
     */
    unsigned __int128 part = (unsigned __int128) frac << shift;
    part /= frac_div;
    if (part > UINT64_MAX - v) {
      fprintf (stderr, "qad-img: %s: value too large: %s\n", what, str);
      return -1;
    }
    v += (unsigned long long) part;
  }
  *ret = v;
  return 0;

 bad:
  fprintf (stderr, "qad-img: %s: cannot parse size: %s\n", what, str);
  return -1;
}

int
map_resolve (struct qad_blockdev *b, uint64_t off, uint64_t max, int depth,
             struct map_where *w)
{
  struct qed_image *q = qed_image_of (b);

  *w = (struct map_where) { .depth = depth, .present = true,
                            .name = b->name };
  if (q) {
    struct qed_mapping m;

    if (qed_map (q, off, max, &m) == -1)
      return -1;
    w->len = m.length;
    switch (m.kind) {
    case QED_KIND_DATA:
      w->data = w->has_offset = true;
      w->offset = m.host_offset;
      return 0;
    case QED_KIND_ZERO:
      w->zero = true;
      return 0;
    case QED_KIND_UNALLOCATED:
      if (q->backing && off < q->backing->size)
        return map_resolve (q->backing, off,
                            MIN (m.length, q->backing->size - off),
                            depth + 1, w);
      /* No backing file, or past its end: zeroes from nowhere, which
       * qemu-img reports at this depth as not present.
       */
      w->zero = true;
      w->present = false;
      return 0;
    }
  }
  else {
    uint32_t flags;

    /* A raw file: bytes at the same offset, holes read as zeroes. */
    if (qad_blockdev_extent (b, off, max, &w->len, &flags) == -1)
      return -1;
    w->data = !(flags & QAD_EXTENT_HOLE);
    w->zero = (flags & QAD_EXTENT_ZERO) != 0;
    w->has_offset = true;
    w->offset = off;
  }
  return 0;
}

void
map_print_human_range (const struct map_human_range *r, const char *image)
{
  if (r->len == 0)
    return;
  printf ("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
          r->start, r->len, r->offset, r->name ? r->name : image);
}

/* The length (2..4) of the well-formed UTF-8 sequence at S (N bytes
 * available), or 0 if S does not start one.  Well-formed as in RFC
 * 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing
 * above U+10FFFF.
 */
static size_t
utf8_sequence_length (const unsigned char *s, size_t n)
{
  size_t len, i;
  unsigned char lo = 0x80, hi = 0xbf;  /* range of the second byte */

  if (s[0] >= 0xc2 && s[0] <= 0xdf)
    len = 2;
  else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    len = 3;
    if (s[0] == 0xe0) lo = 0xa0;        /* overlong */
    if (s[0] == 0xed) hi = 0x9f;        /* surrogates */
  }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    len = 4;
    if (s[0] == 0xf0) lo = 0x90;        /* overlong */
    if (s[0] == 0xf4) hi = 0x8f;        /* above U+10FFFF */
  }
  else
    return 0;                           /* ASCII, continuation, C0, C1, F5.. */

  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < len; ++i)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* Write S (N bytes, not necessarily NUL-terminated or valid UTF-8) as
 * a JSON string.  Well-formed UTF-8 passes through unchanged, so that
 * names in any script read as themselves.  Escaped: '"' and '\\', the
 * control characters U+0000..U+001F and U+007F (as \u00XX), and each
 * byte that is not part of well-formed UTF-8, as \udcXX (XX the byte:
 * the "surrogateescape" convention of Python and others), which no
 * valid character produces, so the original bytes can be recovered.
 */
void
json_string_n (FILE *fp, const char *s, size_t n)
{
  const unsigned char *u = (const unsigned char *) s;
  size_t i = 0, len;

  fputc ('"', fp);
  while (i < n) {
    unsigned char c = u[i];
    if (c == '"' || c == '\\') {
      fprintf (fp, "\\%c", c);
      i++;
    }
    else if (c < 0x20 || c == 0x7f) {
      fprintf (fp, "\\u%04x", c);
      i++;
    }
    else if (c < 0x80) {
      fputc (c, fp);
      i++;
    }
    else if ((len = utf8_sequence_length (u + i, n - i)) > 0) {
      fwrite (u + i, 1, len, fp);
      i += len;
    }
    else {
      fprintf (fp, "\\udc%02x", c);
      i++;
    }
  }
  fputc ('"', fp);
}

void
json_string (FILE *fp, const char *s)
{
  json_string_n (fp, s, strlen (s));
}

void
qad_img_print_error (const char *msg)
{
  fprintf (stderr, "qad-img: %s\n", msg);
}

void
print_check_problem (void *opaque, const char *msg)
{
  bool json = *(bool *) opaque;

  /* With --json, stdout carries only the JSON document. */
  fprintf (json ? stderr : stdout, "%s\n", msg);
}

const char *
parse_file_args (int argc, char **argv, const char *ext, bool *repair,
                 bool *json)
{
  enum { OPT_JSON = 256, OPT_REPAIR };
  static const struct option json_only[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { 0 }
  };
  static const struct option json_and_repair[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "repair", no_argument, NULL, OPT_REPAIR },
    { 0 }
  };
  int c;

  *json = false;
  if (repair)
    *repair = false;
  while ((c = getopt_long (argc, argv, repair ? "r" : "",
                           repair ? json_and_repair : json_only,
                           NULL)) != -1) {
    switch (c) {
    case OPT_JSON: *json = true; break;
    case OPT_REPAIR: case 'r': *repair = true; break;
    default: return NULL;
    }
  }
  if (optind != argc - 1) {
    /* argv[0] is "qad-img VERB" (set by the dispatcher). */
    fprintf (stderr, "qad-img: usage: "
             "%s FILE.%s%s [--json]\n", argv[0], ext,
             repair ? " [--repair]" : "");
    return NULL;
  }
  return argv[optind];
}

void
print_check_json (const struct check_report *r)
{
  const struct check_field *f;

  printf ("{\n  \"filename\": ");
  json_string (stdout, r->filename);
  /* check-errors counts failures of the check itself; then there is
   * no document at all (exit 1), so here it is always 0.
   */
  printf (",\n  \"format\": \"%s\",\n"
          "  \"check-errors\": 0,\n"
          "  \"corruptions\": %" PRIu64 ",\n"
          "  \"corruptions-fixed\": %" PRIu64 ",\n"
          "  \"leaks\": %" PRIu64 ",\n"
          "  \"leaks-fixed\": %" PRIu64,
          r->format, r->corruptions, r->corruptions_fixed,
          r->leaks, r->leaks_fixed);
  for (f = r->fields; f && f->key; ++f) {
    if (f->flag)
      printf (",\n  \"%s\": %s", f->key, f->value ? "true" : "false");
    else
      printf (",\n  \"%s\": %" PRIu64, f->key, f->value);
  }
  printf ("\n}\n");
}
