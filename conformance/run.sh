#!/usr/bin/env bash
# Runs the conformance suites (JS with socket.io-client, Python with python-socketio,
# real pages in headless Chromium) against an already built `switchboard` binary. Each
# suite starts its own `switchboard dev` on free loopback ports.
#
#   conformance/run.sh                 # binary: target/debug/switchboard
#   SWITCHBOARD_BIN=/path/to/switchboard conformance/run.sh
#   CONFORMANCE_SUITES=js conformance/run.sh      # only some suites (js | cluster | python | browser)
#
# The `browser` suite drives Debian's /usr/bin/chromium (CHROMIUM_BIN to override) with
# puppeteer-core; without a Chromium it is skipped with the reason, unless
# CONFORMANCE_BROWSER_REQUIRED=1. It imports the JS suite's fixture (js/lib/server.mjs).
#
# The `cluster` suite starts private redis-server and nats-server processes and several
# `switchboard edge`/`admin` processes (js/lib/cluster.mjs).
#   SWITCHBOARD_TEST_LOGS=1 ...        # echo the servers' logs
#   CONFORMANCE_PIP_INSTALL=1 ...      # pip install the Python suite's pinned requirements first
#
# Exits non-zero if any suite fails; every suite runs even when an earlier one failed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

export SWITCHBOARD_BIN="${SWITCHBOARD_BIN:-$root/target/debug/switchboard}"
case "$SWITCHBOARD_BIN" in /*) ;; *) SWITCHBOARD_BIN="$PWD/$SWITCHBOARD_BIN" ;; esac
if [[ ! -x "$SWITCHBOARD_BIN" ]]; then
  echo "run.sh: no switchboard binary at $SWITCHBOARD_BIN (cargo build -p switchboard, or set SWITCHBOARD_BIN)" >&2
  exit 2
fi

suites="${CONFORMANCE_SUITES:-js cluster python browser}"
failed=()

for suite in $suites; do
  case "$suite" in
    js)
      echo "== JS conformance suite (node --test, socket.io-client)"
      if (cd "$here/js" && npm ci --no-audit --no-fund && node --test --test-concurrency=1 test/); then
        echo "== JS suite: passed"
      else
        failed+=(js)
      fi
      ;;
    cluster)
      echo "== multi-node suite (3 edges, admin, Redis, NATS; socket.io-client)"
      if (cd "$here/js" && node --test --test-concurrency=1 cluster/); then
        echo "== multi-node suite: passed"
      else
        failed+=(cluster)
      fi
      ;;
    python)
      echo "== Python conformance suite (pytest, python-socketio)"
      if [[ "${CONFORMANCE_PIP_INSTALL:-0}" == 1 ]]; then
        python3 -m pip install -q -r "$here/python/requirements.txt" || failed+=(python-deps)
      fi
      if ! python3 -c 'import socketio, engineio, jwt, pytest, requests, websocket' 2>/dev/null; then
        echo "run.sh: Python dependencies missing; install them with: python3 -m pip install -r $here/python/requirements.txt" >&2
        failed+=(python)
      # -p no:kmock: the venv's kmock (the operator's test) has a pytest plugin needing pytest-asyncio.
      elif (cd "$root" && python3 -m pytest -q -p no:cacheprovider -p no:kmock conformance/python); then
        echo "== Python suite: passed"
      else
        failed+=(python)
      fi
      ;;
    browser)
      echo "== browser suite (headless Chromium, socket.io-client browser bundle, pages on other origins)"
      # Its fixture comes from the JS suite, whose packages it needs too; puppeteer-core
      # never downloads a browser, and the variable says so to any other puppeteer.
      if { [[ -d "$here/js/node_modules/socket.io-client" && -d "$here/js/node_modules/jsonwebtoken" ]] \
             || (cd "$here/js" && npm ci --no-audit --no-fund); } \
         && (cd "$here/browser" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund \
             && node --test --test-concurrency=1 test/); then
        echo "== browser suite: passed"
      else
        failed+=(browser)
      fi
      ;;
    *)
      echo "run.sh: unknown suite '$suite' (js | cluster | python | browser)" >&2
      failed+=("$suite")
      ;;
  esac
done

if ((${#failed[@]})); then
  echo "== conformance FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== conformance passed"
