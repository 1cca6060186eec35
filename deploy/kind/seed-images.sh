#!/usr/bin/env bash
# First boot of a Carrack kind node: the node image has kind's pre-loaded images (pause,
# kindnet, coredns, kube-*) in containerd's store. Start containerd on a private socket,
# export them all as one OCI archive straight into `carrack image import`, stop it.
set -euo pipefail
socket=/run/containerd-seed/containerd.sock
mkdir -p /run/containerd-seed
containerd --address "$socket" --state /run/containerd-seed/state >/var/log/containerd-seed.log 2>&1 &
containerd_pid=$!
trap 'kill "$containerd_pid" 2>/dev/null || true; wait "$containerd_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  [ -S "$socket" ] && break
  sleep 0.1
done
mapfile -t images < <(ctr.containerd --address "$socket" -n k8s.io images list -q | grep -v '@sha256:')
if [ "${#images[@]}" -gt 0 ]; then
  ctr.containerd --address "$socket" -n k8s.io images export --platform "linux/$(dpkg --print-architecture)" - "${images[@]}" \
    | carrack image import -
fi
touch /var/lib/carrack/.seeded
