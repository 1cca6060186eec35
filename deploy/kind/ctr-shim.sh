#!/usr/bin/env bash
# `ctr` on a Carrack kind node. kind's `kind load docker-image|image-archive` streams an
# archive into `ctr --namespace=k8s.io images import [flags] -`; that becomes
# `carrack image import -`. Anything else is refused: containerd does not run here
# (its own ctr is /usr/local/bin/ctr.containerd).
set -euo pipefail
args=" $* "
if [[ "$args" == *" images import "* || "$args" == *" image import "* || "$args" == *" i import "* ]]; then
  archive=${*: -1}
  exec carrack image import "$archive"
fi
echo "ctr: containerd is replaced by carrack on this node; use carrack or crictl ($*)" >&2
exit 1
