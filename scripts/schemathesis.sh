#!/usr/bin/env bash
# Fuzzes the admin API against its own OpenAPI document with schemathesis: zero 5xx
# answers, and every answer (status, content type, headers, body) as documented.
# Starts its own `switchboard dev` on free ports. Needs the venv of install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${SWITCHBOARD_BIN:-target/debug/switchboard}"
ST="${SCHEMATHESIS:-target/py-venv/bin/schemathesis}"
TOKEN="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
out="$(mktemp)"
"$BIN" dev --edge-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --admin-token "$TOKEN" >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^admin:' "$out" && break; sleep 0.1; done
admin="$(grep '^admin:' "$out" | awk '{print $2}')"
[ -n "$admin" ] || { echo "schemathesis.sh: switchboard dev did not start" >&2; exit 1; }
"$ST" --config-file scripts/schemathesis.toml run "$admin/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" --seed "${SCHEMATHESIS_SEED:-1}" -w 2 --request-timeout 10
