# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# A real web server for the tests and benchmarks that read images over
# HTTP: lighttpd (Debian package lighttpd) on 127.0.0.1, serving one
# directory with range requests (lighttpd serves ranges of static files
# by default) and an access log with one line per request.
#
#   start_web_server DIR    sets WEB_URL (http://127.0.0.1:PORT), WEB_PID
#                           and WEB_LOG (the access log)
#   stop_web_server
#   web_requests            number of requests logged so far (lighttpd
#                           writes its log about once a second: this
#                           waits until the count is stable)

# start_web_server DIR: serve DIR; fail with lighttpd's errors if it
# does not answer within 10 s.
start_web_server ()
{
  local dir state port i
  dir="$(cd "$1" && pwd)"
  state="$(mktemp -d "${TMPDIR:-/tmp}/web.XXXXXX")"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  WEB_LOG="$state/access.log"
  cat > "$state/lighttpd.conf" <<CONF
server.document-root = "$dir"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$state/error.log"
server.modules = ( "mod_accesslog" )
accesslog.filename = "$WEB_LOG"
server.max-keep-alive-requests = 10000
server.max-keep-alive-idle = 60
mimetype.assign = ( "" => "application/octet-stream" )
CONF
  lighttpd -D -f "$state/lighttpd.conf" 2>"$state/stderr" &
  WEB_PID=$!
  # Under bats, let teardown kill it too.
  if declare -F _pids_file >/dev/null; then
    echo "$WEB_PID" >> "$(_pids_file)"
  fi
  WEB_URL="http://127.0.0.1:$port"
  for i in $(seq 1 100); do
    if curl -sf -o /dev/null -r 0-0 "$WEB_URL/" 2>/dev/null ||
       curl -s -o /dev/null "$WEB_URL/" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$WEB_PID" 2>/dev/null; then
      echo "lighttpd failed to start:" >&2
      cat "$state/stderr" "$state/error.log" >&2 2>/dev/null
      return 1
    fi
    sleep 0.1
  done
  echo "lighttpd did not answer on $WEB_URL" >&2
  return 1
}

stop_web_server ()
{
  if test -n "${WEB_PID:-}"; then
    kill "$WEB_PID" 2>/dev/null || true
    wait "$WEB_PID" 2>/dev/null || true
    WEB_PID=
  fi
}

# web_requests: requests in the access log so far.
web_requests ()
{
  local a b=-1
  while :; do
    sleep 1.2
    a="$(cat "$WEB_LOG" 2>/dev/null | wc -l)"
    test "$a" = "$b" && break
    b="$a"
  done
  echo "$a"
}
