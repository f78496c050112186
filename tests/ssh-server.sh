# nbdkit QED / add-cow / dirty-bitmap bundle
# Copyright (C) 2026 the project authors
# SPDX-License-Identifier: BSD-3-Clause

# A real SSH server for the tests that read images over SSH (nbdkit's
# ssh plugin, which uses SFTP): OpenSSH's sshd (Debian package
# openssh-server) on 127.0.0.1 and a free port, with a host key and a
# client key made for the test, accepting only that key for the
# current user.  Nothing outside the test's own directory is used
# except, as root, sshd's privilege separation directory /run/sshd.
#
#   requires_ssh_server     start it, or skip the test when sshd cannot
#                           run here (an environmental reason), with
#                           sshd's own message
#   SSH_ARGS                the ssh plugin's parameters to reach it
#                           (host=, port=, user=, identity=,
#                           known-hosts=)

SSHD=/usr/sbin/sshd

# start_ssh_server: start sshd and wait until it accepts our key;
# fail (with sshd's messages in $SSH_STATE/sshd.log) otherwise.
start_ssh_server ()
{
  local port i user
  SSH_STATE="$(mktemp -d "${BATS_TEST_TMPDIR:-${TMPDIR:-/tmp}}/sshd.XXXXXX")"
  user="$(id -un)"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  ssh-keygen -q -t ed25519 -N '' -f "$SSH_STATE/host_key" || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$SSH_STATE/id_ed25519" || return 1
  cp "$SSH_STATE/id_ed25519.pub" "$SSH_STATE/authorized_keys"
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$SSH_STATE/host_key.pub")" \
    > "$SSH_STATE/known_hosts"
  cat > "$SSH_STATE/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $SSH_STATE/host_key
PidFile $SSH_STATE/sshd.pid
AuthorizedKeysFile $SSH_STATE/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
  # As root sshd needs its privilege separation directory.
  if test "$(id -u)" -eq 0; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
  fi
  "$SSHD" -D -e -f "$SSH_STATE/sshd_config" 2>"$SSH_STATE/sshd.log" &
  SSH_PID=$!
  if declare -F _pids_file >/dev/null; then
    echo "$SSH_PID" >> "$(_pids_file)"
  fi
  SSH_ARGS=(host=127.0.0.1 port="$port" user="$user"
            identity="$SSH_STATE/id_ed25519"
            known-hosts="$SSH_STATE/known_hosts")
  for i in $(seq 1 100); do
    if ssh -q -o BatchMode=yes -o IdentitiesOnly=yes \
         -o UserKnownHostsFile="$SSH_STATE/known_hosts" \
         -i "$SSH_STATE/id_ed25519" -p "$port" "$user@127.0.0.1" true \
         </dev/null 2>>"$SSH_STATE/client.log"; then
      return 0
    fi
    kill -0 "$SSH_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

requires_ssh_server ()
{
  requires test -x "$SSHD"
  requires command -v ssh-keygen
  requires ssh -V
  requires nbdkit ssh --version
  if ! start_ssh_server; then
    skip "sshd cannot be started here: $(head -c 300 "$SSH_STATE/sshd.log" "$SSH_STATE/client.log" 2>/dev/null | tr '\n' ' ')"
  fi
}
