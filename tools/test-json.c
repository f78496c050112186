/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit test of qad-img's JSON string writer (util.c): well-formed
 * UTF-8 passes through, control characters are \u00XX, and every byte
 * that is not well-formed UTF-8 is \udcXX.
 */

/* assert is this test's check: keep it in a build with -DNDEBUG. */
#undef NDEBUG

#include <config.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qad-img.h"

static int failures;

/* IN (N bytes) must be written as EXPECTED (without the quotes). */
static void
expect (const char *in, size_t n, const char *expected)
{
  char *buf = NULL;
  size_t size = 0;
  FILE *fp = open_memstream (&buf, &size);

  assert (fp != NULL);
  json_string_n (fp, in, n);
  assert (fclose (fp) == 0);
  assert (size >= 2 && buf[0] == '"' && buf[size - 1] == '"');
  if (size - 2 != strlen (expected) ||
      memcmp (buf + 1, expected, size - 2) != 0) {
    fprintf (stderr, "FAIL: expected \"%s\", got %s\n", expected, buf);
    failures++;
  }
  free (buf);
}

#define EXPECT(in, expected) expect ((in), sizeof (in) - 1, (expected))

int
main (void)
{
  /* ASCII, and the two characters JSON escapes by name. */
  EXPECT ("disk.qed", "disk.qed");
  EXPECT ("", "");
  EXPECT ("a\"b\\c", "a\\\"b\\\\c");
  EXPECT ("~ /", "~ /");

  /* Control characters, DEL and NUL (json_string_n takes a length). */
  EXPECT ("a\nb\tc\x01\x1f", "a\\u000ab\\u0009c\\u0001\\u001f");
  EXPECT ("\x7f", "\\u007f");
  EXPECT ("a\0b", "a\\u0000b");

  /* Well-formed UTF-8 of every length passes through. */
  EXPECT ("b\xc3\xa4se.img", "b\xc3\xa4se.img");           /* U+00E4 */
  EXPECT ("\xc2\x80", "\xc2\x80");                         /* U+0080 */
  EXPECT ("\xe2\x82\xac", "\xe2\x82\xac");                 /* U+20AC */
  EXPECT ("\xe0\xa0\x80", "\xe0\xa0\x80");                 /* U+0800 */
  EXPECT ("\xed\x9f\xbf", "\xed\x9f\xbf");                 /* U+D7FF */
  EXPECT ("\xee\x80\x80", "\xee\x80\x80");                 /* U+E000 */
  EXPECT ("\xef\xbf\xbf", "\xef\xbf\xbf");                 /* U+FFFF */
  EXPECT ("\xf0\x90\x80\x80", "\xf0\x90\x80\x80");         /* U+10000 */
  EXPECT ("\xf0\x9f\x92\xbe", "\xf0\x9f\x92\xbe");         /* U+1F4BE */
  EXPECT ("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");         /* U+10FFFF */

  /* Bytes that are not well-formed UTF-8: each one is \udcXX. */
  EXPECT ("\x80", "\\udc80");                    /* lone continuation */
  EXPECT ("\xbf", "\\udcbf");
  EXPECT ("\xff\xfe", "\\udcff\\udcfe");
  EXPECT ("\xe9t\xe9", "\\udce9t\\udce9");        /* Latin-1 "ete" */
  EXPECT ("\xc0\xaf", "\\udcc0\\udcaf");          /* overlong '/' */
  EXPECT ("\xc1\xbf", "\\udcc1\\udcbf");          /* overlong */
  EXPECT ("\xe0\x9f\xbf", "\\udce0\\udc9f\\udcbf"); /* overlong */
  EXPECT ("\xf0\x8f\xbf\xbf", "\\udcf0\\udc8f\\udcbf\\udcbf"); /* overlong */
  EXPECT ("\xed\xa0\x80", "\\udced\\udca0\\udc80"); /* surrogate D800 */
  EXPECT ("\xf4\x90\x80\x80", "\\udcf4\\udc90\\udc80\\udc80"); /* > 10FFFF */
  EXPECT ("\xf5\x80\x80\x80", "\\udcf5\\udc80\\udc80\\udc80");
  /* Truncated sequences: at the end, and before an ASCII byte. */
  EXPECT ("a\xc3", "a\\udcc3");
  EXPECT ("\xe2\x82", "\\udce2\\udc82");
  EXPECT ("\xe2\x82x", "\\udce2\\udc82x");
  EXPECT ("\xf0\x9f\x92", "\\udcf0\\udc9f\\udc92");
  /* A bad byte does not swallow a good character after it. */
  EXPECT ("\xc3\xc3\xa4", "\\udcc3\xc3\xa4");

  /* The length is respected: nothing past N is read or written. */
  expect ("\xc3\xa4", 1, "\\udcc3");
  expect ("abc", 2, "ab");

  /* json_string: the NUL-terminated form. */
  {
    char *buf = NULL;
    size_t size = 0;
    FILE *fp = open_memstream (&buf, &size);
    assert (fp != NULL);
    json_string (fp, "x\xc3\xa4");
    assert (fclose (fp) == 0);
    assert (strcmp (buf, "\"x\xc3\xa4\"") == 0);
    free (buf);
  }

  if (failures > 0) {
    fprintf (stderr, "%d failures\n", failures);
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
