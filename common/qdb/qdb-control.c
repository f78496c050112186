/* nbdkit QED / add-cow / dirty-bitmap bundle
 * Copyright (C) 2026 the project authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The control protocol: see qdb-control.h for the wire format.
 *
 * Notes on the design.  The server is one thread running a poll loop
 * over the listening socket, a stop pipe and up to QDB_CTL_MAX_CLIENTS
 * non-blocking client sockets.  Each client has its own input buffer
 * (header, then body) and output buffer; nothing a client does can
 * block the loop, so a stalled or malicious client only wastes its own
 * slot until the idle timeout.  Requests are handled one at a time in
 * this thread (the handler serialises commands anyway), never in the
 * data path.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qad-error.h"
#include "qdb-control.h"
#include "qdb.h"
#include "vector.h"

DEFINE_VECTOR_TYPE (ctl_info_vector, struct qdb_ctl_bitmap_info);

/*----------------------------------------------------------------------
 * Messages.
 */

static bool
word_ok (const char *w)
{
  const unsigned char *p = (const unsigned char *) w;

  if (*p == 0 || strlen (w) > QDB_MAX_NAME_SIZE)
    return false;
  for (; *p; ++p)
    if (*p <= ' ' || *p >= 0x7f || *p == '/' || *p == ':')
      return false;
  return true;
}

char *
qdb_ctl_encode_request (const struct qdb_op *ops, size_t n, size_t *len)
{
  char *buf = NULL;
  size_t size = 0, i;
  FILE *fp;

  if (n == 0 || n > QDB_CTL_MAX_OPS) {
    qad_error ("control request: %zu operations (1..%d)", n,
               QDB_CTL_MAX_OPS);
    errno = EINVAL;
    return NULL;
  }
  fp = open_memstream (&buf, &size);
  if (!fp) {
    qad_error ("open_memstream: %m");
    return NULL;
  }
  for (i = 0; i < n; ++i) {
    const struct qdb_op *op = &ops[i];

    if (op->kind != QDB_OP_INFO && !qdb_name_ok ("control request",
                                                 op->name))
      goto bad;
    fputs (op->dirty ? QDB_OP_DIRTY_ALL_WORD : qdb_op_word (op->kind), fp);
    if (op->kind != QDB_OP_INFO)
      fprintf (fp, " %s", op->name);
    if (op->kind == QDB_OP_ADD)
      fprintf (fp, " %" PRIu64, op->granularity);
    if (op->kind == QDB_OP_MERGE) {
      if (!op->into || !qdb_name_ok ("control request", op->into))
        goto bad;
      fprintf (fp, " %s", op->into);
    }
    fputc ('\n', fp);
  }
  if (fclose (fp) == EOF) {
    qad_error ("control request: %m");
    free (buf);
    return NULL;
  }
  if (size > QDB_CTL_MAX_MESSAGE) {
    qad_error ("control request: %zu bytes is longer than the maximum "
               "(%d)", size, QDB_CTL_MAX_MESSAGE);
    free (buf);
    errno = E2BIG;
    return NULL;
  }
  *len = size;
  return buf;

 bad:
  fclose (fp);
  free (buf);
  errno = EINVAL;
  return NULL;
}

static const struct {
  const char *word;
  enum qdb_op_kind kind;
  int nargs;
  bool dirty;
} verbs[] = {
  { "add", QDB_OP_ADD, 2, false }, { "remove", QDB_OP_REMOVE, 1, false },
  { "clear", QDB_OP_CLEAR, 1, false },
  { QDB_OP_DIRTY_ALL_WORD, QDB_OP_CLEAR, 1, true },
  { "enable", QDB_OP_ENABLE, 1, false },
  { "disable", QDB_OP_DISABLE, 1, false },
  { "merge", QDB_OP_MERGE, 2, false },
  { "freeze", QDB_OP_FREEZE, 1, false },
  { "release", QDB_OP_RELEASE, 1, false },
  { "info", QDB_OP_INFO, 0, false },
};

/* Split LINE at single spaces into at most MAX words. Returns the
 * count, or MAX+1 when there are more.
 */
static size_t
split (char *line, char **words, size_t max)
{
  size_t n = 0;
  char *p = line;

  for (;;) {
    if (n == max)
      return max + 1;
    words[n++] = p;
    p = strchr (p, ' ');
    if (!p)
      return n;
    *p++ = 0;
  }
}

static bool
parse_u64 (const char *s, uint64_t *r)
{
  uint64_t v = 0;

  if (!*s)
    return false;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (*s - '0');
  }
  *r = v;
  return true;
}

int
qdb_ctl_decode_request (char *body, size_t len, struct qdb_op *ops,
                        size_t *n, char *err, size_t errlen)
{
  size_t lineno = 0, i;
  char *p = body, *end = body + len;

  *n = 0;
  if (len == 0 || body[len - 1] != '\n') {
    snprintf (err, errlen, "malformed request: it must be text lines, "
              "each ended by a newline");
    return -1;
  }
  for (i = 0; i < len; ++i) {
    unsigned char c = body[i];
    if ((c < ' ' && c != '\n') || c >= 0x7f) {
      snprintf (err, errlen, "malformed request: byte 0x%02x at offset %zu "
                "is not printable ASCII", c, i);
      return -1;
    }
  }
  while (p < end) {
    char *nl = memchr (p, '\n', end - p);
    char *w[4];
    size_t nw, v;

    *nl = 0;
    lineno++;
    if (*n == QDB_CTL_MAX_OPS) {
      snprintf (err, errlen, "too many operations (at most %d)",
                QDB_CTL_MAX_OPS);
      return -1;
    }
    nw = split (p, w, 3);
    for (v = 0; v < sizeof verbs / sizeof verbs[0]; ++v)
      if (strcmp (w[0], verbs[v].word) == 0)
        break;
    if (v == sizeof verbs / sizeof verbs[0]) {
      snprintf (err, errlen, "line %zu: unknown operation \"%.64s\"",
                lineno, w[0]);
      return -1;
    }
    if (nw != (size_t) verbs[v].nargs + 1) {
      snprintf (err, errlen, "line %zu: %s takes %d argument(s)",
                lineno, verbs[v].word, verbs[v].nargs);
      return -1;
    }
    ops[*n] = (struct qdb_op) { .kind = verbs[v].kind,
                                .dirty = verbs[v].dirty };
    if (nw >= 2) {
      if (!word_ok (w[1])) {
        snprintf (err, errlen, "line %zu: invalid bitmap name (printable "
                  "ASCII except space, '/' and ':', 1..%d bytes)",
                  lineno, QDB_MAX_NAME_SIZE);
        return -1;
      }
      ops[*n].name = w[1];
    }
    if (verbs[v].kind == QDB_OP_MERGE) {
      if (!word_ok (w[2])) {
        snprintf (err, errlen, "line %zu: invalid bitmap name for the "
                  "merge destination", lineno);
        return -1;
      }
      ops[*n].into = w[2];
    }
    if (verbs[v].kind == QDB_OP_ADD &&
        !parse_u64 (w[2], &ops[*n].granularity)) {
      snprintf (err, errlen, "line %zu: granularity \"%.32s\" is not a "
                "decimal number", lineno, w[2]);
      return -1;
    }
    (*n)++;
    p = nl + 1;
  }
  return 0;
}

int
qdb_ctl_decode_reply (char *body, size_t len,
                      struct qdb_ctl_bitmap_info **info, size_t *nr,
                      const char **errmsg)
{
  char *p = body, *end = body + len;
  ctl_info_vector a = empty_vector;

  *info = NULL;
  *nr = 0;
  if (len == 0 || body[len - 1] != '\n' || memchr (body, 0, len))
    return -1;
  if (strncmp (body, "error ", 6) == 0) {
    *(char *) memchr (body, '\n', len) = 0;
    *errmsg = body + 6;
    return 1;
  }
  if (strncmp (body, "ok\n", 3) != 0)
    return -1;
  for (p = body + 3; p < end; ) {
    char *nl = memchr (p, '\n', end - p);
    char *w[7];
    struct qdb_ctl_bitmap_info b;

    *nl = 0;
    if (split (p, w, 6) != 6 || strcmp (w[0], "bitmap") != 0)
      goto bad;
    b.name = w[1];
    b.state = w[3];
    if (!parse_u64 (w[2], &b.granularity) ||
        !parse_u64 (w[4], &b.dirty_bytes) ||
        !parse_u64 (w[5], &b.disk_size) ||
        ctl_info_vector_append (&a, b) == -1)
      goto bad;
    p = nl + 1;
  }
  *info = a.ptr;
  *nr = a.len;
  return 0;

 bad:
  ctl_info_vector_reset (&a);
  return -1;
}

/*----------------------------------------------------------------------
 * Framing.
 */

static void
put_be32 (uint8_t *p, uint32_t v)
{
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t
get_be32 (const uint8_t *p)
{
  return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
    ((uint32_t) p[2] << 8) | p[3];
}

static int
fill_sockaddr (const char *path, struct sockaddr_un *sa)
{
  memset (sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (strlen (path) >= sizeof sa->sun_path) {
    qad_error ("%s: socket path too long (at most %zu bytes)", path,
               sizeof sa->sun_path - 1);
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy (sa->sun_path, path);
  return 0;
}

/* Wait until FD is ready for EVENTS before DEADLINE (CLOCK_MONOTONIC
 * seconds).  0 when ready, -1 with errno ETIMEDOUT otherwise.
 */
static int
wait_fd (int fd, short events, time_t deadline)
{
  struct pollfd pfd = { .fd = fd, .events = events };
  struct timespec now;
  int r;

  for (;;) {
    clock_gettime (CLOCK_MONOTONIC, &now);
    if (now.tv_sec >= deadline) {
      errno = ETIMEDOUT;
      return -1;
    }
    r = poll (&pfd, 1, (deadline - now.tv_sec) * 1000);
    if (r > 0)
      return 0;
    if (r == -1 && errno != EINTR)
      return -1;
  }
}

static int
xfer (int fd, void *buf, size_t len, bool sending, time_t deadline)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t r;

    if (wait_fd (fd, sending ? POLLOUT : POLLIN, deadline) == -1)
      return -1;
    r = sending ? send (fd, p, len, MSG_NOSIGNAL) : recv (fd, p, len, 0);
    if (r == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r == -1)
      return -1;
    if (r == 0) {
      errno = ECONNRESET;
      return -1;
    }
    p += r;
    len -= r;
  }
  return 0;
}

int
qdb_ctl_call (const char *path, const char *body, size_t len, int timeout,
              char **reply, size_t *reply_len)
{
  struct sockaddr_un sa;
  struct timespec now;
  uint8_t hdr[4];
  uint32_t rlen;
  char *r = NULL;
  time_t deadline;
  int fd;

  if (fill_sockaddr (path, &sa) == -1)
    return -1;
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    qad_error ("socket: %m");
    return -1;
  }
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) == -1) {
    qad_error ("%s: connect: %m (is nbdkit running with "
               "dirty-bitmap-control=%s?)", path, path);
    close (fd);
    return -1;
  }
  clock_gettime (CLOCK_MONOTONIC, &now);
  deadline = now.tv_sec + timeout;
  put_be32 (hdr, len);
  if (xfer (fd, hdr, 4, true, deadline) == -1 ||
      xfer (fd, (void *) body, len, true, deadline) == -1 ||
      xfer (fd, hdr, 4, false, deadline) == -1)
    goto io_error;
  rlen = get_be32 (hdr);
  if (rlen == 0 || rlen > QDB_CTL_MAX_MESSAGE) {
    qad_error ("%s: the server sent a reply of invalid length %" PRIu32,
               path, rlen);
    close (fd);
    errno = EPROTO;
    return -1;
  }
  r = malloc (rlen + 1);
  if (!r) {
    qad_error ("malloc: %m");
    close (fd);
    return -1;
  }
  if (xfer (fd, r, rlen, false, deadline) == -1)
    goto io_error;
  r[rlen] = 0;
  close (fd);
  *reply = r;
  *reply_len = rlen;
  return 0;

 io_error:
  qad_error ("%s: %s", path, errno == ETIMEDOUT
             ? "no reply from the server in time" : strerror (errno));
  free (r);
  close (fd);
  return -1;
}

/*----------------------------------------------------------------------
 * Server.
 */

struct client {
  int fd;                       /* -1: free slot */
  uint8_t hdr[4];
  size_t hdr_got;
  char *in;                     /* body being received */
  size_t in_len, in_got;
  uint8_t *out;                 /* framed reply being sent */
  size_t out_len, out_sent;
  bool close_after_send;
  time_t last;                  /* last progress, CLOCK_MONOTONIC */
};

struct qdb_ctl_server {
  char *path;
  int listen_fd;
  int stop_pipe[2];
  struct client clients[QDB_CTL_MAX_CLIENTS];
};

static time_t
mono_now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

struct qdb_ctl_server *
qdb_ctl_server_new (const char *path)
{
  struct qdb_ctl_server *srv;
  struct sockaddr_un sa;
  struct stat st;
  mode_t old_umask;
  size_t i;
  int fd;

  if (fill_sockaddr (path, &sa) == -1)
    return NULL;
  if (lstat (path, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      qad_error ("%s: dirty-bitmap-control: the path exists and is not a "
                 "socket: refusing to replace it", path);
      errno = EEXIST;
      return NULL;
    }
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0) {
      close (fd);
      qad_error ("%s: dirty-bitmap-control: the socket is in use by another "
                 "server: refusing to replace it", path);
      errno = EADDRINUSE;
      return NULL;
    }
    if (fd >= 0)
      close (fd);
    unlink (path);              /* stale */
  }

  srv = calloc (1, sizeof *srv);
  if (!srv) {
    qad_error ("calloc: %m");
    return NULL;
  }
  for (i = 0; i < QDB_CTL_MAX_CLIENTS; ++i)
    srv->clients[i].fd = -1;
  srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
  srv->path = strdup (path);
  srv->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC |
                           SOCK_NONBLOCK, 0);
  if (!srv->path || srv->listen_fd == -1 ||
      pipe2 (srv->stop_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
    qad_error ("%s: socket: %m", path);
    goto err;
  }
  old_umask = umask (0077);
  i = bind (srv->listen_fd, (struct sockaddr *) &sa, sizeof sa);
  umask (old_umask);
  if (i != 0) {
    qad_error ("%s: bind: %m", path);
    goto err;
  }
  if (chmod (path, 0600) == -1 || listen (srv->listen_fd, 16) == -1) {
    qad_error ("%s: listen: %m", path);
    unlink (path);
    goto err;
  }
  return srv;

 err:
  if (srv->listen_fd >= 0)
    close (srv->listen_fd);
  if (srv->stop_pipe[0] >= 0) {
    close (srv->stop_pipe[0]);
    close (srv->stop_pipe[1]);
  }
  free (srv->path);
  free (srv);
  return NULL;
}

static void
drop_client (struct client *c)
{
  close (c->fd);
  free (c->in);
  free (c->out);
  memset (c, 0, sizeof *c);
  c->fd = -1;
}

/* Queue REPLY (a body, taken over) for sending. */
static void
queue_reply (struct client *c, char *reply, size_t len, bool then_close)
{
  free (c->out);
  c->out = malloc (len + 4);
  if (!c->out) {
    free (reply);
    drop_client (c);
    return;
  }
  put_be32 (c->out, len);
  memcpy (c->out + 4, reply, len);
  free (reply);
  c->out_len = len + 4;
  c->out_sent = 0;
  c->close_after_send = then_close;
}

static void
queue_error (struct client *c, const char *msg)
{
  char *r = NULL;
  int n = asprintf (&r, "error %s\n", msg);

  if (n == -1) {
    drop_client (c);
    return;
  }
  queue_reply (c, r, n, true);
}

/* Data arrived (or EOF) on client C. */
static void
client_read (struct client *c, qdb_ctl_handler handler, void *opaque)
{
  ssize_t r;

  if (c->hdr_got < 4) {
    r = recv (c->fd, c->hdr + c->hdr_got, 4 - c->hdr_got, 0);
    if (r > 0) {
      c->hdr_got += r;
      c->last = mono_now ();
      if (c->hdr_got == 4) {
        uint32_t len = get_be32 (c->hdr);
        if (len == 0 || len > QDB_CTL_MAX_MESSAGE) {
          char msg[96];
          snprintf (msg, sizeof msg, "message length %" PRIu32 " out of "
                    "range (1..%d)", len, QDB_CTL_MAX_MESSAGE);
          queue_error (c, msg);
          return;
        }
        c->in = malloc (len);
        if (!c->in) {
          drop_client (c);
          return;
        }
        c->in_len = len;
        c->in_got = 0;
      }
      return;
    }
  }
  else {
    r = recv (c->fd, c->in + c->in_got, c->in_len - c->in_got, 0);
    if (r > 0) {
      c->in_got += r;
      c->last = mono_now ();
      if (c->in_got == c->in_len) {
        size_t rlen;
        char *reply = handler (opaque, c->in, c->in_len, &rlen);
        free (c->in);
        c->in = NULL;
        c->hdr_got = 0;
        if (!reply)
          drop_client (c);
        else
          queue_reply (c, reply, rlen, false);
      }
      return;
    }
  }
  if (r == -1 && (errno == EAGAIN || errno == EINTR))
    return;
  /* EOF or error.  Mid-message: answer if the peer only half-closed. */
  if (r == 0 && c->hdr_got > 0)
    queue_error (c, "truncated message (the connection was closed before "
                 "the whole message arrived)");
  else
    drop_client (c);
}

static void
client_write (struct client *c)
{
  ssize_t r = send (c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
                    MSG_NOSIGNAL | MSG_DONTWAIT);

  if (r == -1 && (errno == EAGAIN || errno == EINTR))
    return;
  if (r <= 0) {
    drop_client (c);
    return;
  }
  c->out_sent += r;
  c->last = mono_now ();
  if (c->out_sent == c->out_len) {
    free (c->out);
    c->out = NULL;
    if (c->close_after_send)
      drop_client (c);
  }
}

static void
accept_client (struct qdb_ctl_server *srv)
{
  static const char busy[] = "\0\0\0\x29" "error too many control clients "
    "connected\n";
  size_t i;
  int fd = accept4 (srv->listen_fd, NULL, NULL,
                    SOCK_CLOEXEC | SOCK_NONBLOCK);

  if (fd == -1)
    return;
  for (i = 0; i < QDB_CTL_MAX_CLIENTS; ++i)
    if (srv->clients[i].fd == -1) {
      srv->clients[i].fd = fd;
      srv->clients[i].last = mono_now ();
      return;
    }
  /* Full: best effort, never block. */
  if (send (fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    /* ignored */
  }
  close (fd);
}

int
qdb_ctl_server_run (struct qdb_ctl_server *srv, qdb_ctl_handler handler,
                    void *opaque)
{
  for (;;) {
    struct pollfd pfds[QDB_CTL_MAX_CLIENTS + 2];
    struct client *owner[QDB_CTL_MAX_CLIENTS + 2];
    size_t n = 0, i;
    time_t now = mono_now ();
    int r;

    pfds[n++] = (struct pollfd) { .fd = srv->stop_pipe[0], .events = POLLIN };
    pfds[n++] = (struct pollfd) { .fd = srv->listen_fd, .events = POLLIN };
    for (i = 0; i < QDB_CTL_MAX_CLIENTS; ++i) {
      struct client *c = &srv->clients[i];
      if (c->fd == -1)
        continue;
      if (now - c->last >= QDB_CTL_IDLE_TIMEOUT) {
        drop_client (c);
        continue;
      }
      owner[n] = c;
      pfds[n++] = (struct pollfd) {
        .fd = c->fd, .events = c->out ? POLLOUT : POLLIN
      };
    }
    r = poll (pfds, n, 1000);
    if (r == -1 && errno != EINTR) {
      qad_error ("%s: poll: %m", srv->path);
      return -1;
    }
    if (r <= 0)
      continue;
    if (pfds[0].revents)
      return 0;
    if (pfds[1].revents & POLLIN)
      accept_client (srv);
    for (i = 2; i < n; ++i) {
      struct client *c = owner[i];
      if (!pfds[i].revents || c->fd != pfds[i].fd)
        continue;
      if (c->out)
        client_write (c);
      else
        client_read (c, handler, opaque);
    }
  }
}

void
qdb_ctl_server_stop (struct qdb_ctl_server *srv)
{
  if (write (srv->stop_pipe[1], "x", 1) < 0) {
    /* the pipe is non-blocking and already has a byte: fine */
  }
}

void
qdb_ctl_server_free (struct qdb_ctl_server *srv)
{
  size_t i;

  if (!srv)
    return;
  for (i = 0; i < QDB_CTL_MAX_CLIENTS; ++i)
    if (srv->clients[i].fd >= 0)
      drop_client (&srv->clients[i]);
  close (srv->listen_fd);
  close (srv->stop_pipe[0]);
  close (srv->stop_pipe[1]);
  unlink (srv->path);
  free (srv->path);
  free (srv);
}
