/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qad-img.h"

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
  unsigned long long v, mult = 1;
  unsigned shift = 0;

  errno = 0;
  if (!isdigit ((unsigned char) str[0]))
    goto bad;
  v = strtoull (str, &end, 10);
  if (errno != 0)
    goto bad;
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
  mult = 1ULL << shift;
  if (v > UINT64_MAX / mult) {
    fprintf (stderr, "qad-img: %s: value too large: %s\n", what, str);
    return -1;
  }
  *ret = v * mult;
  return 0;

 bad:
  fprintf (stderr, "qad-img: %s: cannot parse size: %s\n", what, str);
  return -1;
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
print_check_problem (void *opaque, const char *msg)
{
  bool json = *(bool *) opaque;

  /* With --json, stdout carries only the JSON document. */
  fprintf (json ? stderr : stdout, "%s\n", msg);
}
