/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Refusals that can only be made after a server has forked (nbdkit
 * calls .after_fork once it has bound its sockets and, unless -f,
 * forked into the background or, with --run, forked the captive
 * server off the process that runs the command).
 *
 * Two things go wrong there without help.  In the background the
 * error goes to the system log only (stderr is /dev/null by then), and
 * the command that started the server has already exited with 0.
 * Under --run the server exits but the parent, running the command,
 * still holds the listening socket: the command's clients connect and
 * wait forever for a greeting.
 *
 * late_refusal_prepare, before the fork, keeps a copy of stderr.
 * late_refusal_report, after the refusal and before exiting, writes
 * LINE to that copy if stderr is no longer the same file (so the line
 * appears once in every mode), then shuts down every listening socket
 * of the process (the socket object is shared with the parent: new
 * connections are refused) and closes the connections already queued
 * (their clients see the connection closed at once).
 */

#ifndef QAD_LATE_REFUSAL_H
#define QAD_LATE_REFUSAL_H

extern void late_refusal_prepare (void);
extern void late_refusal_report (const char *line);

#endif /* QAD_LATE_REFUSAL_H */
