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

step "cargo clippy --all-targets --features failpoints -- -D warnings"
cargo clippy --locked --all-targets --features failpoints -- -D warnings

step "layering: leaves never import upward"
bash tests/check-layering.sh

step "cargo test (unit + root integration)"
# Every package deploy/packages.sh lists is installed now: a test missing one fails instead
# of printing "skipped".
export CARRACK_REQUIRE_ALL=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked --all-targets --features failpoints 2>&1 | tee "$log"
# One closing line for the whole suite (the last binary cargo runs is the bench, which only
# prints its usage in test mode).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\n%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
