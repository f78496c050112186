/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The dirty-bitmap filter's control protocol (dirty-bitmap-control=
 * SOCKET), in one place for both ends: the filter (server) and
 * "qad-img bitmap|info --connect=SOCKET" (client).
 *
 * Wire format, on a Unix stream socket.  Every message, request or
 * reply, is a 4-byte big-endian length N (1 .. QDB_CTL_MAX_MESSAGE)
 * followed by N bytes of text: lines, each ended by '\n', no NUL byte.
 * One request gets exactly one reply; a client may send several
 * requests on one connection, one at a time.
 *
 * Request lines, one operation each, applied in order and atomically
 * (all or none, and atomic with respect to writes):
 *   add NAME GRANULARITY | remove NAME | clear NAME | dirty-all NAME |
 *   enable NAME | disable NAME | merge SRC DST | freeze NAME |
 *   release NAME | info
 * (dirty-all is a clear to all dirty: QDB_OP_CLEAR with .dirty set.)
 * Reply: first line "ok" or "error MESSAGE".  After "ok", one line per
 * bitmap when the request contained "info":
 *   bitmap NAME GRANULARITY STATE DIRTY_BYTES DISK_SIZE
 * where STATE is enabled, disabled or frozen.
 *
 * The server (qdb_ctl_server_run) serves many clients with poll on
 * non-blocking sockets: a client that stalls mid-message holds only its
 * own buffer, is dropped after QDB_CTL_IDLE_TIMEOUT seconds and never
 * delays the others; a malformed or oversized message gets an error
 * reply and the connection is closed.
 */

#ifndef QAD_QDB_CONTROL_H
#define QAD_QDB_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qdb-ops.h"

#define QDB_CTL_MAX_MESSAGE 65536
#define QDB_CTL_MAX_OPS 64
#define QDB_CTL_MAX_CLIENTS 16
#define QDB_CTL_IDLE_TIMEOUT 30         /* seconds */

/* Build the text of a request from OPS.  Returns a malloc'd,
 * NUL-terminated body (*LEN excludes the NUL), or NULL on error
 * (reported).
 */
extern char *qdb_ctl_encode_request (const struct qdb_op *ops, size_t n,
                                     size_t *len);

/* Parse BODY (LEN bytes, modified in place: the ops point into it).
 * On error, writes a message to ERR and returns -1.
 */
extern int qdb_ctl_decode_request (char *body, size_t len,
                                   struct qdb_op *ops, size_t *n,
                                   char *err, size_t errlen);

/* One bitmap line of an info reply. */
struct qdb_ctl_bitmap_info {
  char *name;
  uint64_t granularity;
  const char *state;            /* "enabled", "disabled", "frozen" */
  uint64_t dirty_bytes;
  uint64_t disk_size;
};

/* Parse a reply (modified in place).  Returns 0 for "ok" (with *INFO
 * a malloc'd array of *NR entries pointing into BODY), 1 for "error"
 * (*ERRMSG points into BODY), -1 for a malformed reply.
 */
extern int qdb_ctl_decode_reply (char *body, size_t len,
                                 struct qdb_ctl_bitmap_info **info,
                                 size_t *nr, const char **errmsg);

/* Client side: connect to SOCKET, send BODY as one request, wait for
 * the reply (at most TIMEOUT seconds), return it malloc'd and
 * NUL-terminated in *REPLY.  Returns -1 after reporting an error.
 */
extern int qdb_ctl_call (const char *socket, const char *body, size_t len,
                         int timeout, char **reply, size_t *reply_len);

/* Server side. */
struct qdb_ctl_server;

/* The handler gets one complete request body and returns a malloc'd
 * reply body (NULL: out of memory, the client is dropped).
 */
typedef char *(*qdb_ctl_handler) (void *opaque, char *body, size_t len,
                                  size_t *reply_len);

/* Create the listening socket at PATH, mode 0600.  An existing socket
 * that accepts connections is refused (another server uses it); a
 * stale one is replaced; anything else at PATH is refused.
 */
extern struct qdb_ctl_server *qdb_ctl_server_new (const char *path);

/* Serve until qdb_ctl_server_stop is called (from another thread).
 * Returns 0, or -1 after reporting an error.
 */
extern int qdb_ctl_server_run (struct qdb_ctl_server *srv,
                               qdb_ctl_handler handler, void *opaque);
extern void qdb_ctl_server_stop (struct qdb_ctl_server *srv);

/* Close everything and remove the socket. */
extern void qdb_ctl_server_free (struct qdb_ctl_server *srv);

#endif /* QAD_QDB_CONTROL_H */
