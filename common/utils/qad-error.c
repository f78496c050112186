/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "qad-error.h"

static void
default_handler (const char *msg)
{
  fprintf (stderr, "%s\n", msg);
}

static qad_error_handler handler = default_handler;

void
qad_set_error_handler (qad_error_handler h)
{
  handler = h ? h : default_handler;
}

void
qad_error (const char *fs, ...)
{
  int saved_errno = errno;
  char msg[1024];
  va_list args;

  va_start (args, fs);
  vsnprintf (msg, sizeof msg, fs, args);
  va_end (args);
  handler (msg);
  errno = saved_errno;
}
