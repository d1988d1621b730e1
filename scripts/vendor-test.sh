#!/usr/bin/env bash
# Runs the vendored crates' own tests (vendor/PATCHES.md): each is outside the workspace,
# with its own lock file, built into target/vendor.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in vendor/*/; do
  [ -f "$dir/Cargo.toml" ] || continue
  echo "-- $dir"
  (cd "$dir" && CARGO_TARGET_DIR="$OLDPWD/target/vendor" cargo test --locked --all-features --quiet)
done
