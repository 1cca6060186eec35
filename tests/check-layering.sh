#!/usr/bin/env bash
# Enforces the architecture's "never up" rule: leaf modules must not import the CRI layer, the
# domain services or the generated proto types.
set -euo pipefail
cd "$(dirname "$0")/.."
leaves=()
for leaf in executor cgroups cni snapshot store config; do
  [ -d "src/$leaf" ] && leaves+=("src/$leaf")
done
if [ "${#leaves[@]}" -eq 0 ]; then
  exit 0
fi
if grep -rnE 'crate::(cri|sandbox|container|daemon|proto|streaming|image_service)\b' "${leaves[@]}"; then
  echo "layering violation: a leaf module imports an upper layer (see ARCHITECTURE.md)" >&2
  exit 1
fi
# The command line is a CRI client: it may use the generated proto types and its own
# modules, never the runtime's (ARCHITECTURE.md: "cli ... shares only the generated proto types").
if [ -d src/cli ] && grep -rnE '(crate|carrack)::(cri|sandbox|container|daemon|streaming|image_service|snapshot|store|cgroups|cni|executor|monitor|config|telemetry|events|resumable|rollback|error_kind)\b' src/cli; then
  echo "layering violation: src/cli imports a runtime module; it may use only crate::proto and crate::cli" >&2
  exit 1
fi
echo "layering ok (${leaves[*]} src/cli)"
