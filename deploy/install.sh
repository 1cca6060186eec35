#!/usr/bin/env bash
# Installs Carrack on a Debian bookworm machine as root and starts the daemon with the default
# configuration, serving CRI on /run/carrack/carrack.sock. What it puts in place:
#
#   /usr/local/bin/carrack                     the daemon and the `carrack` command line
#   /usr/local/bin/carrack-monitor             the per-container monitor (found beside the daemon)
#   /etc/carrack/config.toml                   deploy/config.toml (kept if present)
#   /etc/systemd/system/carrack.service        deploy/systemd/carrack.service (systemd hosts)
#   /etc/cni/net.d/10-carrack.conflist         bridge + portmap, only if no CNI config exists
#   /etc/bash_completion.d/carrack             `carrack completion bash`
#   /usr/local/share/carrack/busybox.tar       a tiny test image (deploy/test-image.sh) for
#                                              `carrack image import` without a registry
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
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/carrack-monitor" /usr/local/bin/carrack-monitor
install -d -m 0755 /etc/carrack
# The defaults are a working node; an existing config is the operator's and is kept.
if [ ! -e /etc/carrack/config.toml ]; then
  install -m 0644 deploy/config.toml /etc/carrack/config.toml
fi

# A pod network, unless the node already has one (kubelet nodes get theirs from the cluster's
# network add-on).
install -d -m 0755 /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist >/dev/null 2>&1; then
  cat > /etc/cni/net.d/10-carrack.conflist <<'CONFLIST'
{
  "cniVersion": "1.0.0",
  "name": "carrack",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.0.0/16"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CONFLIST
fi

install -d -m 0755 /etc/bash_completion.d
/usr/local/bin/carrack completion bash > /etc/bash_completion.d/carrack
bash deploy/test-image.sh /usr/local/share/carrack/busybox.tar

socket=/run/carrack/carrack.sock
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
  install -m 0644 deploy/systemd/carrack.service /etc/systemd/system/carrack.service
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
echo "carrack $(/usr/local/bin/carrack version 2>/dev/null | head -1 | cut -d' ' -f2) is serving CRI on unix://$socket"
echo "try: carrack image import /usr/local/share/carrack/busybox.tar && carrack run --rm carrack.local/busybox echo hello"
