#!/usr/bin/env bash
# Live heap per idle WebSocket connection of `switchboard dev`, measured with heaptrack.
#
# Usage: loadtest/heaptrack-idle.sh [OUT_DIR]
# Environment: SWITCHBOARD_BIN, LOADTEST_BIN (default: target/release/*), LOW (1000) and
# HIGH (5000) connection counts.
#
# It runs the server under heaptrack twice, holding LOW and then HIGH idle connections
# (`loadtest idle`, 256 handshakes in flight), and takes heaptrack's peak heap of each run
# (reached while every connection is held). Bytes per socket are
# (peak(HIGH) - peak(LOW)) / (HIGH - LOW): fixed costs, and the handshakes in flight, cancel
# out. The allocation sites that make up each peak are in OUT_DIR/peak-{LOW,HIGH}.txt
# (`heaptrack_print --print-peaks`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SB=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
LT=${LOADTEST_BIN:-$ROOT/target/release/loadtest}
LOW=${LOW:-1000}
HIGH=${HIGH:-5000}
OUT=${1:-$ROOT/loadtest/results/heaptrack-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
command -v heaptrack >/dev/null || { apt-get update -qq && apt-get install -y -qq heaptrack; }
ulimit -n "$(ulimit -Hn)"

peak_bytes() { # heaptrack file -> peak heap bytes
  heaptrack_print "$1" 2>/dev/null | sed -n 's/^peak heap memory consumption: //p' | numfmt --from=iec --suffix=B | tr -d B
}

run() { # conns
  local n=$1 f=$OUT/.sb-$1.out pid hp data
  heaptrack -o "$OUT/heaptrack-$n" "$SB" dev --edge-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --admin-token loadtest-admin-token --handshake-rate-per-ip 0 --handshake-rate-per-tenant 0 \
    >"$f" 2>&1 &
  hp=$!
  for _ in $(seq 300); do grep -q '^client token:' "$f" && break; sleep 0.1; done
  pid=$(pgrep -P "$hp" -x switchboard || true)
  # heaptrack starts the server as a child process (or execs into it)
  [ -n "$pid" ] || pid=$hp
  LOADTEST_SECRET=$(sed -n 's/^demo key: .*secret=\([^ ]*\).*/\1/p' "$f") \
  LOADTEST_ADMIN_TOKEN=loadtest-admin-token "$LT" idle --conns "$n" --duration 5 \
    --url "$(sed -n 's/^socket.io: //p' "$f")" --admin-url "$(sed -n 's/^admin: //p' "$f")" \
    --raise-limits --no-progress >"$OUT/idle-$n.log" 2>&1
  kill -INT "$pid"
  wait "$hp" || true
  data=$(ls "$OUT"/heaptrack-"$n".*zst "$OUT"/heaptrack-"$n".*gz 2>/dev/null | head -1)
  heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
    --peak-limit 40 "$data" >"$OUT/peak-$n.txt" 2>/dev/null || true
  peak_bytes "$data"
}

lo=$(run "$LOW")
hi=$(run "$HIGH")
per=$(( (hi - lo) / (HIGH - LOW) ))
echo "peak heap: $lo B at $LOW connections, $hi B at $HIGH; $per B per connection" | tee "$OUT/summary.txt"
