#!/usr/bin/env bash
# The whole test suite: formatting, lints, the layering rule, unit tests and the root
# integration tests (real daemon, registry, namespaces, cgroups). Run as root on Debian bookworm:
#
#   bash tests/run.sh
#
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "tests/run.sh: the integration tests need root" >&2
  exit 1
fi

step() { printf '\n=== %s\n' "$*"; }

step "debian packages"
bash deploy/packages.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "layering: leaves never import upward"
bash tests/check-layering.sh

step "cargo test (unit + root integration)"
cargo test --locked --all-targets
