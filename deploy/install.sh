#!/usr/bin/env bash
# Installs Carrack on a Debian bookworm machine as root and starts the daemon with the default
# configuration, serving CRI on /run/carrack/carrack.sock.
#
#   bash deploy/install.sh
#
# Idempotent: re-running rebuilds, reinstalls and restarts the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi

bash deploy/packages.sh

cargo build --release --locked
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/carrack" /usr/local/bin/carrack
install -d -m 0755 /etc/carrack
# The defaults are a working node; an existing config is the operator's and is kept.
if [ ! -e /etc/carrack/config.toml ]; then
  /usr/local/bin/carrack config default > /etc/carrack/config.toml
fi

socket=/run/carrack/carrack.sock
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  install -m 0644 deploy/carrack.service /etc/systemd/system/carrack.service
  systemctl daemon-reload
  systemctl enable carrack.service
  systemctl restart carrack.service
else
  # No systemd here: run the daemon detached, logging to /var/log/carrack.log.
  if [ -s /run/carrack/daemon.pid ] && kill -0 "$(cat /run/carrack/daemon.pid)" 2>/dev/null; then
    kill -TERM "$(cat /run/carrack/daemon.pid)"
    for _ in $(seq 1 120); do
      kill -0 "$(cat /run/carrack/daemon.pid)" 2>/dev/null || break
      sleep 0.1
    done
  fi
  install -d -m 0711 /run/carrack
  setsid /usr/local/bin/carrack daemon >>/var/log/carrack.log 2>&1 < /dev/null &
  echo $! > /run/carrack/daemon.pid
fi

for _ in $(seq 1 100); do
  [ -S "$socket" ] && break
  sleep 0.1
done
if [ ! -S "$socket" ]; then
  echo "install.sh: the daemon did not come up; see /var/log/carrack.log or journalctl -u carrack" >&2
  exit 1
fi
echo "carrack $(/usr/local/bin/carrack version | head -1 | cut -d' ' -f2) is serving CRI on unix://$socket"
