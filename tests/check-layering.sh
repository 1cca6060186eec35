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
echo "layering ok (${leaves[*]})"
