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

void
json_string_n (FILE *fp, const char *s, size_t n)
{
  size_t i;

  fputc ('"', fp);
  for (i = 0; i < n; ++i) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\')
      fprintf (fp, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      fprintf (fp, "\\u%04x", c);
    else
      fputc (c, fp);
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
