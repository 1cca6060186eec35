#!/usr/bin/env bash
# The Debian packages Carrack and its tests need, installed once (apt-get update first).
set -euo pipefail
packages=(
  protobuf-compiler
  iproute2 iptables util-linux procps
  containernetworking-plugins
  docker-registry
  busybox-static
  prometheus
  dbus-daemon  # tests/systemd.rs: a private bus for the fake systemd manager
  # The CLI's parity test drives containerd through CRI, and the unit is checked with
  # systemd-analyze. Installing them starts nothing where systemd is not PID 1 (containerd
  # ships only a systemd unit); the test runs its own containerd on its own socket.
  containerd runc
  systemd
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
