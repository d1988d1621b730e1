#!/usr/bin/env bash
# Runs the standard load-test suite against Switchboard and the reference Node Socket.IO
# server, side by side, on this machine (127.0.0.1 only), and writes the results under
# loadtest/results/<UTC time>-<commit>[-quick][-clusterK]/:
#   machine.json                 the machine, toolchains and commit the numbers came from
#   <scenario>-<target>.json     one run (loadtest --json), <scenario>-<target>.log its output
#   <scenario>.svg               latency percentiles of both targets
#   summary.json / summary.md    every metric side by side, with the ratio node/switchboard
# The path of summary.json is the last line printed.
#
# Usage: loadtest/run-local.sh [--quick] [--only s1,s2] [--targets switchboard,node]
#                              [--cluster K] [--no-pin] [--out DIR]
#   --quick      smoke sizes: the whole suite in under two minutes (binaries built)
#   --only       a subset of: handshake handshake-ticket fanout fanout-max fanout-100k rooms churn
#                revocation idle idle-1k idle-2k idle-5k idle-10k idle-15k idle-19k resume rolling
#                chaos (the idle-<size> points and chaos run only when named here; plot the idle
#                points with loadtest/plot-idle-growth.py; rolling, a rolling restart of the edges
#                under publishing, and
#                chaos, NATS/Redis/an edge killed and NATS frozen under publishing, only with
#                --cluster)
#   --cluster K  K Switchboard edges + an admin over Redis and NATS, and K Node processes
#                with the Redis adapter (starts its own redis-server and nats-server unless
#                REDIS_URL / NATS_URL are set); default: one `switchboard dev`, one Node process
#   --no-pin     let the server and the generator share both cores; by default the server
#                under test is pinned to CPU 0 and the generator to CPU 1, so that each
#                server gets the same single core and the generator does not steal from it
# Environment: SWITCHBOARD_BIN, LOADTEST_BIN (skip the cargo build), NODE (node binary),
#   KEEP_LOGS=1 (keep the servers' logs, .*.out, in the results directory),
#   NO_ROLL=1 (run the rolling scenario without restarting anything: its baseline),
#   CHAOS_FAULTS (default "nats-kill redis-kill edge-kill nats-freeze").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
ONLY=""
TARGETS="switchboard,node"
CLUSTER=0
PIN=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY="$2"; shift ;;
    --targets) TARGETS="$2"; shift ;;
    --cluster) CLUSTER="$2"; shift ;;
    --no-pin) PIN=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(nproc)" -ge 2 ] || PIN=0
[ "$CLUSTER" -gt 0 ] && PIN=0

log() { echo "[run-local] $*" >&2; }

# ---- binaries ----
if [ -z "${SWITCHBOARD_BIN:-}" ] || [ -z "${LOADTEST_BIN:-}" ]; then
  log "building release binaries (cargo build --release -p switchboard -p loadtest)"
  cargo build --release -p switchboard -p loadtest >&2
fi
SB=${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}
LT=${LOADTEST_BIN:-$ROOT/target/release/loadtest}
NODE=${NODE:-node}
PEER=$ROOT/loadtest/peers/socketio-node
if [[ ",$TARGETS," == *",node,"* ]]; then
  command -v "$NODE" >/dev/null || { echo "node is required for the Node peer (or --targets switchboard)" >&2; exit 1; }
  if [ ! -d "$PEER/node_modules" ] || [ "$PEER/package-lock.json" -nt "$PEER/node_modules/.package-lock.json" ]; then
    log "installing the Node peer (npm ci)"
    (cd "$PEER" && npm ci --no-audit --no-fund >&2)
  fi
fi

# ---- results directory and machine description ----
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Dirty: any change to tracked files, or untracked files outside loadtest/results.
DIRTY=false
[ -z "$(git status --porcelain -- . ':!loadtest/results' 2>/dev/null)" ] || DIRTY=true
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
SUFFIX=""
[ "$QUICK" = 1 ] && SUFFIX="-quick"
[ "$CLUSTER" -gt 0 ] && SUFFIX="$SUFFIX-cluster$CLUSTER"
RES=${OUT:-$ROOT/loadtest/results/$STAMP-$COMMIT$SUFFIX}
mkdir -p "$RES"
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --arg commit "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --argjson dirty "$DIRTY" \
  --arg kernel "$(uname -sr)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  --argjson cores "$(nproc)" \
  --argjson mem_gib "$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)" \
  --arg nofile "$(ulimit -Hn)" \
  --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
  --arg node "$("$NODE" --version 2>/dev/null || echo none)" \
  --arg socketio "$(jq -r '.packages["node_modules/socket.io"].version // "?"' "$PEER/package-lock.json" 2>/dev/null || echo '?')" \
  --argjson quick "$([ "$QUICK" = 1 ] && echo true || echo false)" \
  --argjson cluster "$CLUSTER" \
  --argjson pinned "$([ "$PIN" = 1 ] && echo true || echo false)" \
  '{date: $date, commit: $commit, dirty: $dirty, kernel: $kernel, cpu: $cpu, cores: $cores,
    mem_gib: $mem_gib, open_files_hard_limit: $nofile, rustc: $rustc, node: $node,
    socket_io: $socketio, quick: $quick, cluster_edges: $cluster,
    pinning: (if $pinned then "server on CPU 0, generator on CPU 1" else "none" end)}' \
  >"$RES/machine.json"
log "results in $RES"

SERVER_CPU=()
GEN_CPU=()
if [ "$PIN" = 1 ]; then
  SERVER_CPU=(taskset -c 0)
  GEN_CPU=(taskset -c 1)
fi

ADMIN_TOKEN="loadtest-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NODE_SECRET="node-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PIDS=()
EXTRA_PIDS=()
NATS_DIR=""

cleanup_servers() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup_all() {
  cleanup_servers
  for p in "${EXTRA_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "${NATS_DIR:-}" ] && rm -rf "$NATS_DIR"
  [ -n "${REDIS_DIR:-}" ] && rm -rf "$REDIS_DIR"
  return 0
}
trap cleanup_all EXIT

wait_line() { # file pattern seconds
  local i
  for i in $(seq 1 $(($3 * 10))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

wait_http() { # url seconds
  local i
  for i in $(seq 1 $(($2 * 10))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# ---- Redis and NATS for --cluster ----
# Redis keeps its data in an append-only file and NATS its JetStream in files, both in
# private directories, so that the chaos scenario can kill and restart them with their data.
REDIS_PID=""
NATS_PID=""
REDIS_DIR=""
start_redis() {
  redis-server --port 6391 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --dir "$REDIS_DIR" >>"$RES/redis.log" 2>&1 &
  REDIS_PID=$!
  EXTRA_PIDS+=("$REDIS_PID")
}
start_nats() {
  nats-server -a 127.0.0.1 -p 4233 -js -sd "$NATS_DIR" >>"$RES/nats.log" 2>&1 &
  NATS_PID=$!
  EXTRA_PIDS+=("$NATS_PID")
}
wait_port() { # port seconds
  local i
  for i in $(seq 1 $(($2 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for port $1" >&2
  return 1
}
if [ "$CLUSTER" -gt 0 ]; then
  if [ -z "${REDIS_URL:-}" ]; then
    command -v redis-server >/dev/null || { echo "--cluster needs redis-server or REDIS_URL" >&2; exit 1; }
    REDIS_DIR=$(mktemp -d)
    start_redis
    REDIS_URL=redis://127.0.0.1:6391
  fi
  if [ -z "${NATS_URL:-}" ]; then
    command -v nats-server >/dev/null || { echo "--cluster needs nats-server or NATS_URL" >&2; exit 1; }
    NATS_DIR=$(mktemp -d)
    start_nats
    NATS_URL=nats://127.0.0.1:4233
  fi
  [ -n "$REDIS_DIR" ] && wait_port 6391 10
  [ -n "$NATS_DIR" ] && wait_port 4233 10
fi

# Starts (or restarts) cluster edge $1 on its port; its pid goes to EDGE_PIDS[$1] and PIDS.
start_edge() {
  local i=$1
  "$SB" edge --edge-addr "127.0.0.1:$((4391 + i))" --redis-url "$REDIS_URL" --nats-url "$NATS_URL" \
    --handshake-rate-per-ip 0 --handshake-rate-per-tenant 0 --drain-seconds 2 --node-id "edge$i" \
    >>"$RES/.edge$i.out" 2>&1 &
  PIDS+=($!)
  EDGE_PIDS[i]=$!
}

# A rolling restart of every cluster edge, one at a time: SIGTERM (the edge drains its
# sessions with `session_end {code: "draining"}`), wait for it to exit, start it again on
# the same port, wait until it is ready, pause, next.
roll_edges() {
  local i pid
  for i in $(seq 0 $((CLUSTER - 1))); do
    pid=${EDGE_PIDS[$i]}
    log "rolling restart: edge $i (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    start_edge "$i"
    wait_http "http://127.0.0.1:$((4391 + i))/readyz" 30
    sleep 2
  done
}

# The chaos scenario's faults, one per run: each writes $RES/chaos-<fault>.fault.json
# (what, when it began, when the part was back). Only servers this script started.
now_ms() { date +%s%3N; }
fault_record() { # fault what start end
  jq -n --arg f "$1" --arg w "$2" --argjson s "$3" --argjson e "$4" \
    '{fault: $f, what: $w, start_ms: $s, end_ms: $e}' >"$RES/chaos-$1.fault.json"
}
chaos_fault() {
  local f=$1 start last=$((CLUSTER - 1))
  start=$(now_ms)
  case "$f" in
    nats-kill)
      log "chaos: SIGKILL nats-server (pid $NATS_PID), restart after 3 s"
      kill -KILL "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true
      sleep 3; start_nats; wait_port 4233 20
      fault_record "$f" "NATS SIGKILL, restarted after 3 s (JetStream on file)" "$start" "$(now_ms)" ;;
    redis-kill)
      log "chaos: SIGKILL redis-server (pid $REDIS_PID), restart after 3 s"
      kill -KILL "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
      sleep 3; start_redis; wait_port 6391 20
      fault_record "$f" "Redis SIGKILL, restarted after 3 s (append-only file)" "$start" "$(now_ms)" ;;
    edge-kill)
      log "chaos: SIGKILL edge $last (pid ${EDGE_PIDS[$last]}), restart after 3 s"
      kill -KILL "${EDGE_PIDS[$last]}"; wait "${EDGE_PIDS[$last]}" 2>/dev/null || true
      sleep 3; start_edge "$last"; wait_http "http://127.0.0.1:$((4391 + last))/readyz" 30
      fault_record "$f" "edge SIGKILL (1 of $CLUSTER), restarted after 3 s" "$start" "$(now_ms)" ;;
    nats-freeze)
      log "chaos: SIGSTOP nats-server for 10 s"
      kill -STOP "$NATS_PID"; sleep 10; kill -CONT "$NATS_PID"
      fault_record "$f" "NATS frozen (SIGSTOP) for 10 s" "$start" "$(now_ms)" ;;
  esac
}
CHAOS_FAULTS=${CHAOS_FAULTS:-nats-kill redis-kill edge-kill nats-freeze}

# Starts one target; sets URLS (array), SECRET, ADMIN_URL, SERVER_PIDS (array).
start_switchboard() {
  local f=$RES/.switchboard.out
  SERVER_PIDS=()
  URLS=()
  if [ "$CLUSTER" -eq 0 ]; then
    "${SERVER_CPU[@]}" "$SB" dev --edge-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
      --admin-token "$ADMIN_TOKEN" --handshake-rate-per-ip 0 --handshake-rate-per-tenant 0 \
      >"$f" 2>"$RES/.switchboard.err" &
    PIDS+=($!)
    SERVER_PIDS+=($!)
    wait_line "$f" '^client token:' 30
    URLS=("$(sed -n 's/^socket.io: //p' "$f")")
    ADMIN_URL=$(sed -n 's/^admin: //p' "$f")
    SECRET=$(sed -n 's/^demo key: .*secret=\([^ ]*\).*/\1/p' "$f")
    KID=demo-hs256
  else
    local i port
    "$SB" admin --admin-addr 127.0.0.1:4390 --admin-token "$ADMIN_TOKEN" \
      --redis-url "$REDIS_URL" --nats-url "$NATS_URL" >"$RES/.admin.out" 2>&1 &
    PIDS+=($!)
    SERVER_PIDS+=($!)
    ADMIN_URL=http://127.0.0.1:4390/v1
    EDGE_PIDS=()
    for i in $(seq 0 $((CLUSTER - 1))); do
      start_edge "$i"
      SERVER_PIDS+=("${EDGE_PIDS[$i]}")
      URLS+=("http://127.0.0.1:$((4391 + i))/demo")
    done
    wait_http "http://127.0.0.1:4390/v1/openapi.json" 30
    for i in $(seq 0 $((CLUSTER - 1))); do wait_http "http://127.0.0.1:$((4391 + i))/readyz" 30; done
    curl -fsS -o /dev/null -X POST "$ADMIN_URL/tenants" -H "authorization: Bearer $ADMIN_TOKEN" \
      -H 'content-type: application/json' -d '{"id":"demo"}' 2>/dev/null || true
    local key
    key=$(curl -fsS -X POST "$ADMIN_URL/tenants/demo/keys" -H "authorization: Bearer $ADMIN_TOKEN" \
      -H 'content-type: application/json' -d '{"alg":"HS256"}')
    SECRET=$(echo "$key" | jq -r .secret)
    KID=$(echo "$key" | jq -r .kid)
  fi
  RAISE=(--raise-limits)
}

start_node() {
  local i port n
  SERVER_PIDS=()
  URLS=()
  n=$((CLUSTER > 0 ? CLUSTER : 1))
  for i in $(seq 0 $((n - 1))); do
    port=$((4491 + i))
    (cd "$PEER" && exec env PORT=$port SECRET="$NODE_SECRET" ADMIN_TOKEN="$ADMIN_TOKEN" \
      REDIS_URL="$([ "$CLUSTER" -gt 0 ] && echo "$REDIS_URL" || true)" \
      "${SERVER_CPU[@]}" "$NODE" server.mjs >"$RES/.node$i.out" 2>&1) &
    PIDS+=($!)
    SERVER_PIDS+=($!)
    URLS+=("http://127.0.0.1:$port/demo")
  done
  for i in $(seq 0 $((n - 1))); do wait_line "$RES/.node$i.out" '^socket.io:' 30; done
  ADMIN_URL=http://127.0.0.1:4491/v1
  SECRET=$NODE_SECRET
  KID=demo-hs256
  RAISE=()
}

# ---- the suite: name | loadtest arguments (full) | (quick) ----
SUITE=(
  "handshake|handshake --conns 5000|handshake --conns 300"
  "handshake-ticket|handshake --ticket --conns 2000 --label handshake-ticket|handshake --ticket --conns 200 --label handshake-ticket"
  "fanout|fanout --conns 2000 --rate 20 --duration 20|fanout --conns 200 --rate 10 --duration 3"
  "fanout-max|fanout --conns 2000 --rate 400 --duration 15 --drain 5 --label fanout-max|fanout --conns 200 --rate 200 --duration 3 --label fanout-max"
  # Issue 12's latency target: 100,000 deliveries/s (2,000 subscribers x 50 msg/s), p99 < 100 ms.
  "fanout-100k|fanout --conns 2000 --rate 50 --duration 20 --drain 5 --label fanout-100k|fanout --conns 200 --rate 50 --duration 3 --label fanout-100k"
  "rooms|rooms --conns 5000 --rooms 500 --rate 200 --duration 20|rooms --conns 500 --rooms 50 --rate 50 --duration 3"
  "churn|churn --conns 1000 --hold-ms 5000 --rate 10 --duration 20|churn --conns 200 --hold-ms 1000 --rate 10 --duration 3"
  "revocation|revocation --conns 1000 --revocations 200 --rate 20|revocation --conns 100 --revocations 20 --rate 20"
  "idle|idle --conns 10000 --duration 10|idle --conns 1000 --duration 2"
  "idle-1k|idle --conns 1000 --duration 10 --label idle-1k|idle --conns 100 --duration 2 --label idle-1k"
  "idle-2k|idle --conns 2000 --duration 10 --label idle-2k|idle --conns 200 --duration 2 --label idle-2k"
  "idle-5k|idle --conns 5000 --duration 10 --label idle-5k|idle --conns 500 --duration 2 --label idle-5k"
  "idle-10k|idle --conns 10000 --duration 10 --label idle-10k|idle --conns 1000 --duration 2 --label idle-10k"
  "idle-15k|idle --conns 15000 --duration 10 --label idle-15k|idle --conns 1500 --duration 2 --label idle-15k"
  "idle-19k|idle --conns 19000 --duration 10 --label idle-19k|idle --conns 1900 --duration 2 --label idle-19k"
  "resume|resume --conns 500 --drop-ms 5000 --rate 20 --duration 20 --drain 5|resume --conns 100 --drop-ms 1000 --rate 10 --duration 3 --drain 1"
  # Cluster runs only, Switchboard only (the Node peer has neither resume nor server-side
  # publish): the edges are restarted one by one while the admin API publishes.
  "rolling|server-publish --resume --conns 1000 --concurrency 4 --rate 100 --duration 30 --drain 5 --label rolling|server-publish --resume --conns 150 --concurrency 2 --rate 50 --duration 20 --drain 3 --label rolling"
  # Cluster runs only, Switchboard only, run only when named: one run per fault
  # (CHAOS_FAULTS), each fault 8 s into 30 s of publishing through the admin API and
  # through sockets on the first edge; see chaos_fault.
  "chaos|server-publish --resume --conns 1000 --concurrency 4 --rate 100 --edge-rate 50 --duration 30 --drain 20|server-publish --resume --conns 150 --concurrency 2 --rate 50 --edge-rate 20 --duration 25 --drain 15"
)

FAILED=()
FILES=()
IFS=',' read -r -a TARGET_LIST <<<"$TARGETS"
for entry in "${SUITE[@]}"; do
  IFS='|' read -r name full quick <<<"$entry"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  # The idle-memory points of issue #7 (5k and 19k connections) are opt-in: --only idle-5k,idle-19k.
  if [ -z "$ONLY" ] && [[ "$name" == idle-* || "$name" == chaos ]]; then continue; fi
  args=$full
  [ "$QUICK" = 1 ] && args=$quick
  runs=()
  if [[ "$name" == rolling || "$name" == chaos ]] && [ "$CLUSTER" -lt 2 ]; then continue; fi
  if [ "$name" = chaos ]; then
    CASES=()
    for fault in $CHAOS_FAULTS; do
      start_switchboard
      url_args=()
      for u in "${URLS[@]}"; do url_args+=(--url "$u"); done
      json=$RES/chaos-$fault-switchboard.json
      log "chaos $fault: loadtest $args"
      # shellcheck disable=SC2086
      LOADTEST_SECRET=$SECRET LOADTEST_ADMIN_TOKEN=$ADMIN_TOKEN "$LT" $args --target switchboard \
        "${url_args[@]}" --kid "$KID" --admin-url "$ADMIN_URL" "${RAISE[@]}" --label "chaos-$fault" \
        --json "$json" --no-progress >"$RES/chaos-$fault-switchboard.log" 2>&1 &
      gen=$!
      if wait_line "$RES/chaos-$fault-switchboard.log" "publishing through" 120; then
        sleep 8
        chaos_fault "$fault"
      fi
      if wait "$gen"; then
        grep -v '^\[' "$RES/chaos-$fault-switchboard.log" >&2 || true
        CASES+=("$json:$RES/chaos-$fault.fault.json")
      else
        log "chaos $fault FAILED (see $RES/chaos-$fault-switchboard.log)"
        tail -5 "$RES/chaos-$fault-switchboard.log" >&2 || true
        FAILED+=("chaos/$fault")
      fi
      cleanup_servers
    done
    if [ "${#CASES[@]}" -gt 0 ]; then
      "$LT" chaos "${CASES[@]}" --json "$RES/chaos.json" --markdown "$RES/chaos.md" --plots "$RES" >&2
    fi
    continue
  fi
  for target in "${TARGET_LIST[@]}"; do
    if [ "$name" = rolling ] && [ "$target" != switchboard ]; then continue; fi
    case "$target" in
      switchboard) start_switchboard ;;
      node) start_node ;;
      *) echo "unknown target $target" >&2; exit 2 ;;
    esac
    url_args=()
    for u in "${URLS[@]}"; do url_args+=(--url "$u"); done
    pid_args=()
    for p in "${SERVER_PIDS[@]}"; do pid_args+=(--server-pid "$p"); done
    json=$RES/$name-$target.json
    log "$name / $target: loadtest $args"
    # The edges' pids change during a rolling restart: no server sampling there.
    [ "$name" = rolling ] && pid_args=()
    # shellcheck disable=SC2086
    LOADTEST_SECRET=$SECRET LOADTEST_ADMIN_TOKEN=$ADMIN_TOKEN "${GEN_CPU[@]}" "$LT" $args \
      --target "$target" "${url_args[@]}" --kid "$KID" "${pid_args[@]}" --admin-url "$ADMIN_URL" \
      "${RAISE[@]}" --json "$json" --no-progress >"$RES/$name-$target.log" 2>&1 &
    gen=$!
    if [ "$name" = rolling ]; then
      # Let the subscribers connect and the publishing start, then roll every edge.
      [ -n "${NO_ROLL:-}" ] || { wait_line "$RES/$name-$target.log" "publishing through" 60 && sleep 2 && roll_edges; }
    fi
    if wait "$gen"; then
      grep -v '^\[' "$RES/$name-$target.log" >&2 || true
      runs+=("$json")
      FILES+=("$json")
    else
      log "$name / $target FAILED (see $RES/$name-$target.log)"
      tail -5 "$RES/$name-$target.log" >&2 || true
      FAILED+=("$name/$target")
    fi
    cleanup_servers
  done
  if [ "${#runs[@]}" -gt 0 ] && [[ "$name" != idle* ]]; then
    "$LT" plot "${runs[@]}" --out "$RES/$name.svg" >/dev/null 2>&1 || log "no plot for $name"
  fi
done
[ -n "${KEEP_LOGS:-}" ] || rm -f "$RES"/.*.out "$RES"/.*.err

if [ "${#FILES[@]}" -gt 0 ]; then
  "$LT" compare "${FILES[@]}" --machine "$RES/machine.json" --json "$RES/summary.json" \
    --markdown "$RES/summary.md" >&2
else
  jq '{machine: ., rows: []}' "$RES/machine.json" >"$RES/summary.json"
fi
if [ "${#FAILED[@]}" -gt 0 ]; then
  log "failed: ${FAILED[*]}"
  jq --argjson failed "$(printf '%s\n' "${FAILED[@]}" | jq -R . | jq -s .)" '. + {failed: $failed}' \
    "$RES/summary.json" >"$RES/summary.json.tmp" 2>/dev/null && mv "$RES/summary.json.tmp" "$RES/summary.json"
fi
echo "$RES/summary.json"
[ "${#FAILED[@]}" -eq 0 ]
