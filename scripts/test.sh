#!/usr/bin/env bash
# Runs every test: formatting, lints, the Rust unit and integration tests, and the
# conformance suites that drive the real binary with the official JS and Python
# Socket.IO clients, and the Helm chart and Dockerfile (scripts/chart-test.sh). Installs
# what is missing first (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== cargo fmt"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== the policy fuzz target builds (its own workspace and lock file; fuzzing needs nightly)"
# Unlocked: its lock file is not kept (services/policy/fuzz/.gitignore).
cargo check --manifest-path services/policy/fuzz/Cargo.toml --target-dir target/fuzz
echo "== cargo test"
cargo build --locked -p switchboard
# The operator's kmock test runs its Kubernetes API emulator with the venv's python (kmock).
export SWITCHBOARD_PYTHON="$PWD/target/py-venv/bin/python"
cargo test --workspace --locked
echo "== vendored crates' own tests (vendor/PATCHES.md)"
scripts/vendor-test.sh
echo "== conformance (socket.io-client, python-socketio, headless Chromium)"
PATH="$PWD/target/py-venv/bin:$PATH" SWITCHBOARD_BIN="$PWD/target/debug/switchboard" conformance/run.sh
echo "== admin API fuzzing against its OpenAPI document (schemathesis)"
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" scripts/schemathesis.sh
echo "== helm chart (helm lint/template, kubernetes-validate, schema, invariants) and Dockerfile (hadolint)"
scripts/chart-test.sh
echo "== all tests passed"
