#!/usr/bin/env bash
# Runs Hearth's benchmarks, and the same load against its peers (Socket.IO 4 on
# Node, Flask-SocketIO on gevent) and against a bare tokio fan-out server (the floor:
# no application at all), prints a table with the ratios, and writes
# bench/results/latest.json and bench/results/fanout.svg.
#
#   ./scripts/bench.sh           every scenario, Hearth, the floor, the peers and a cluster (~15 minutes)
#   ./scripts/bench.sh --quick   Hearth only, small and short (under 2 minutes; CI)
#
# Method: each server is pinned to core 0 and the load generator to core 1, so the
# figures are per server core; each rate step runs for a fixed time and drops its
# first second. Traffic goes to loopback only and every run is bounded in time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/bench-env.sh"
cd "$HEARTH_ROOT"

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "$QUICK" = 1 ]; then
  STEP=3; IDLE_STEP=3; DURABLE_RATES=(5000 20000); FANOUT_RATES=(250 1000); HISTORY_MESSAGES=50000
  IDLE_ROOMS=20; BIG_ROOM=1000; SYSTEMS=(hearth); CLUSTER_RATES=(250)
else
  STEP=10; IDLE_STEP=30; DURABLE_RATES=(5000 10000 20000 40000); FANOUT_RATES=(250 500 750 1000 1500 2000 4000)
  IDLE_ROOMS=190; BIG_ROOM=10000; SYSTEMS=(hearth bare-rust socketio-node flask-socketio)
  HISTORY_MESSAGES=1000000
  CLUSTER_RATES=(250 500 1000 1500)
fi
FLASK_RATES=(25 50 100 200)
# BENCH_SYSTEMS="hearth bare-rust" measures only those of the single-node servers.
[ -n "${BENCH_SYSTEMS:-}" ] && read -ra SYSTEMS <<<"$BENCH_SYSTEMS"

say "building the server, the load generator and the site (release)"
cargo build --release --features loadgen --bin hearth --bin loadgen
cargo leptos build --release --precompress
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
if [ "$QUICK" = 0 ]; then
  say "installing the peers"
  CARGO_TARGET_DIR=target/peers cargo build --release --quiet --manifest-path bench/peers/bare-rust/Cargo.toml
  (cd bench/peers/socketio-node && npm ci --no-audit --no-fund --silent)
  if [ ! -x bench/peers/flask-socketio/.venv/bin/python ]; then
    python3 -m venv bench/peers/flask-socketio/.venv
  fi
  bench/peers/flask-socketio/.venv/bin/pip install --quiet -r bench/peers/flask-socketio/requirements.txt
fi

PORT=3400
REDIS_PORT=3490
POSTGRES_PORT=3491
# A PostgreSQL of its own for the single-node steps (durable sends, history).
SOLO_POSTGRES_PORT=3492
SOLO_POSTGRES_PID=""
RESULTS="$(mktemp)"
DATA=""
SERVER_PID=""
NODE_PIDS=()
NODE_ADDRS=()
REDIS_PID=""
POSTGRES_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "$DATA" ] && rm -rf "$DATA"
  [ -n "$SOLO_POSTGRES_PID" ] && kill "$SOLO_POSTGRES_PID" 2>/dev/null && wait "$SOLO_POSTGRES_PID" 2>/dev/null
  stop_cluster
  rm -f "$RESULTS"
}
trap cleanup EXIT

# start SYSTEM [ENV=VALUE ...]: starts a server on $PORT pinned to core 0.
start() {
  local system=$1; shift
  DATA="$(mktemp -d)"
  case "$system" in
    hearth)
      env HEARTH_CONFIG=/dev/null LEPTOS_SITE_ADDR="127.0.0.1:$PORT" LEPTOS_SITE_ROOT=target/site \
        HEARTH_DATA_DIR="$DATA" RUST_LOG=warn \
        "${BENCH_LIMITS[@]}" "$@" \
        taskset -c 0 ./target/release/hearth >/dev/null 2>&1 &
      ;;
    bare-rust)
      PORT=$PORT taskset -c 0 target/peers/release/bare-fanout >/dev/null 2>&1 & ;;
    socketio-node)
      PORT=$PORT taskset -c 0 node bench/peers/socketio-node/server.js >/dev/null 2>&1 & ;;
    flask-socketio)
      PORT=$PORT taskset -c 0 bench/peers/flask-socketio/.venv/bin/python bench/peers/flask-socketio/app.py >/dev/null 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "$system did not start" >&2; return 1
}

stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -rf "$DATA"; DATA=""
}

dialect() { [ "$1" = hearth ] && echo hearth || echo socketio; }

wait_port() { # HOST:PORT
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing answers on $1" >&2; return 1
}

# start_cluster COUNT CORES: PostgreSQL (the records, fsync on), Redis (the bus,
# nothing on disk: it keeps nothing that is not in PostgreSQL) and COUNT Hearth
# nodes on them, on ports PORT+1..., all pinned to CORES.
start_cluster() {
  local count=$1 cores=$2
  taskset -c "$cores" bash scripts/postgres.sh "$POSTGRES_PORT" >/dev/null 2>&1 &
  POSTGRES_PID=$!
  taskset -c "$cores" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
    --appendonly no >/dev/null 2>&1 &
  REDIS_PID=$!
  wait_port "127.0.0.1:$REDIS_PORT"
  until pg_isready -q -h 127.0.0.1 -p "$POSTGRES_PORT"; do sleep 0.1; done
  NODE_PIDS=(); NODE_ADDRS=()
  for i in $(seq 1 "$count"); do
    env HEARTH_CONFIG=/dev/null LEPTOS_SITE_ADDR="127.0.0.1:$((PORT + i))" LEPTOS_SITE_ROOT=target/site \
      HEARTH_DATABASE_URL="postgres://hearth@127.0.0.1:$POSTGRES_PORT/postgres" \
      HEARTH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" RUST_LOG=warn \
      "${BENCH_LIMITS[@]}" \
      taskset -c "$cores" ./target/release/hearth >/dev/null 2>&1 &
    NODE_PIDS+=($!); NODE_ADDRS+=("127.0.0.1:$((PORT + i))")
  done
  for addr in "${NODE_ADDRS[@]}"; do wait_port "$addr"; done
}

stop_cluster() {
  for pid in "${NODE_PIDS[@]}" $REDIS_PID $POSTGRES_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}" $REDIS_PID $POSTGRES_PID; do wait "$pid" 2>/dev/null || true; done
  NODE_PIDS=(); NODE_ADDRS=(); REDIS_PID=""; POSTGRES_PID=""
}

joined() { local IFS=,; echo "$*"; }

# make_channels N: N more channels on the server on $PORT, made as a person would.
make_channels() {
  local base="http://127.0.0.1:$PORT/api" token=bench-channel-maker
  curl -s -o /dev/null "$base/claim_name" --data "name=Channel+Maker&token=$token"
  for i in $(seq 1 "$1"); do
    curl -s -o /dev/null "$base/create_channel" \
      --data "name=Bench+$i&as_name=Channel+Maker&token=$token"
  done
}

loadgen() { # SYSTEM SCENARIO ARGS...
  local system=$1 scenario=$2; shift 2
  taskset -c 1 ./target/release/loadgen "$scenario" --addr "127.0.0.1:$PORT" \
    --server-pid "$SERVER_PID" --label "$system" "$@" >>"$RESULTS" \
    || echo "  ($system $scenario did not complete)" >&2
}

# The build leaves gigabytes to write back; the durable steps' fsyncs should not
# queue behind it.
sync
sleep 2
# PostgreSQL for the single-node steps, pinned beside the server, fsync on.
taskset -c 0 bash scripts/postgres.sh "$SOLO_POSTGRES_PORT" >/dev/null 2>&1 &
SOLO_POSTGRES_PID=$!
until pg_isready -q -h 127.0.0.1 -p "$SOLO_POSTGRES_PORT"; do sleep 0.1; done
solo_database() { # NAME: a new database in it, by its address
  createdb -h 127.0.0.1 -p "$SOLO_POSTGRES_PORT" -U hearth "$1"
  echo "postgres://hearth@127.0.0.1:$SOLO_POSTGRES_PORT/$1"
}

for store in sqlite postgres memory; do
  for rate in "${DURABLE_RATES[@]}"; do
    say "durable sends: hearth ($store) at $rate/s"
    case "$store" in
      postgres) start hearth HEARTH_DATABASE_URL="$(solo_database "durable$rate")" ;;
      *) start hearth HEARTH_STORE="$store" HEARTH_DURABILITY=full ;;
    esac
    taskset -c 1 ./target/release/loadgen acks --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
      --clients 50 --rate "$rate" --seconds "$STEP" --label "hearth ($store)" >>"$RESULTS" || true
    stop
  done
done

# History pages at random points of one long channel, filled straight into the
# store while the server is stopped, then served by it.
history_pages() { # STORE WHERE ENV=VALUE: the store, where fill.py writes, how hearth finds it
  say "history pages: a channel of $HISTORY_MESSAGES messages ($1)"
  start hearth "$3" && stop
  python3 bench/history/fill.py "$1" "$2" "$HISTORY_MESSAGES"
  start hearth "$3"
  python3 bench/history/measure.py "127.0.0.1:$PORT" "hearth ($1)" "$HISTORY_MESSAGES" >>"$RESULTS" \
    || echo "  ($1 history pages did not complete)" >&2
  stop
}
HISTORY_DIR="$(mktemp -d)"
history_pages sqlite "$HISTORY_DIR" HEARTH_DATA_DIR="$HISTORY_DIR"
rm -rf "$HISTORY_DIR"
HISTORY_URL="$(solo_database history)"
history_pages postgres "$HISTORY_URL" HEARTH_DATABASE_URL="$HISTORY_URL"
kill "$SOLO_POSTGRES_PID" 2>/dev/null; wait "$SOLO_POSTGRES_PID" 2>/dev/null || true
SOLO_POSTGRES_PID=""

for system in "${SYSTEMS[@]}"; do
  rates=("${FANOUT_RATES[@]}")
  [ "$system" = flask-socketio ] && rates=("${FLASK_RATES[@]}")
  for rate in "${rates[@]}"; do
    say "fan-out: $system, 10 rooms of 100, $rate messages/s"
    start "$system"
    loadgen "$system" fanout --dialect "$(dialect "$system")" --rooms 10 --members 100 \
      --rate "$rate" --seconds "$STEP"
    stop
  done
  # Held for longer than one ping interval (25 s for Hearth and for Engine.IO) so
  # the idle CPU includes a full round of pings.
  say "idle: $system, $IDLE_ROOMS rooms of 100"
  start "$system"
  loadgen "$system" idle --dialect "$(dialect "$system")" --rooms "$IDLE_ROOMS" --members 100 \
    --sources 4 --concurrency 512 --seconds "$IDLE_STEP"
  stop
  if [ "$system" = hearth ]; then
    # The same storm with as many channels as a server keeps (1,000, the two
    # storms' rooms included): first tabs opened afresh, whose welcomes list every
    # channel, then tabs coming back (as after a restart), which show the list
    # already and whose welcomes must cost what they cost with a few channels.
    say "idle: hearth with 1,000 channels, $IDLE_ROOMS rooms of 100, fresh then returning"
    start hearth
    make_channels $((1000 - 1 - 2 * IDLE_ROOMS))
    loadgen "hearth 1k chan" idle --rooms "$IDLE_ROOMS" --members 100 \
      --sources 4 --concurrency 512 --seconds "$IDLE_STEP"
    loadgen "hearth 1k back" idle --rooms "$IDLE_ROOMS" --members 100 \
      --sources 4 --concurrency 512 --seconds "$IDLE_STEP" --returning
    stop
  fi
  if [ "$system" = hearth ] || [ "$system" = bare-rust ]; then
    say "big room: $system, $BIG_ROOM members, 10 messages/s"
    start "$system"
    loadgen "$system" fanout --dialect "$(dialect "$system")" --rooms 1 --members "$BIG_ROOM" \
      --sources 4 --concurrency 512 --rate 10 --seconds "$STEP"
    stop
  fi
done

# Cluster: the same fan-out with its members spread over two nodes on PostgreSQL +
# Redis, every server-side process (both nodes, PostgreSQL and Redis) pinned to
# core 0 like the single node above; the nodes' and Redis's CPU are counted in the
# cost per delivery (PostgreSQL's many processes are not).
for rate in "${CLUSTER_RATES[@]}"; do
  say "fan-out: hearth, two nodes on PostgreSQL + Redis, 10 rooms of 100, $rate messages/s"
  start_cluster 2 0
  taskset -c 1 ./target/release/loadgen fanout --addr "${NODE_ADDRS[0]}" --nodes "${NODE_ADDRS[1]}" \
    --server-pid "$(joined "${NODE_PIDS[@]}" "$REDIS_PID")" --label "hearth 2 nodes" \
    --rooms 10 --members 100 --rate "$rate" --seconds "$STEP" >>"$RESULTS" \
    || echo "  (cluster fan-out did not complete)" >&2
  stop_cluster
done

if [ "$QUICK" = 0 ]; then
  # Past one process's 20,000-file limit: five nodes, five load generators, each
  # filling its own 190 rooms of 100 with members spread over all five nodes. Many
  # source addresses: binding a source port before connecting draws on one range
  # per address, which slows to a crawl as it fills.
  say "scale: five nodes on PostgreSQL + Redis holding 95,000 connections"
  start_cluster 5 0,1
  sleep 1
  base_rss=0
  for pid in "${NODE_PIDS[@]}"; do base_rss=$((base_rss + $(awk '/VmRSS/{print $2}' "/proc/$pid/status"))); done
  SCALE_DIR="$(mktemp -d)"
  for p in 0 1 2 3 4; do
    rest=("${NODE_ADDRS[@]:$((p + 1))}" "${NODE_ADDRS[@]:0:$p}")
    ./target/release/loadgen idle --addr "${NODE_ADDRS[$p]}" --nodes "$(joined "${rest[@]}")" \
      --rooms 190 --members 100 --room-prefix scale --first-room $((p * 190)) \
      --sources 24 --concurrency 128 --seconds 20 --check-presence --label "hearth 5 nodes" \
      >"$SCALE_DIR/$p.json" 2>"$SCALE_DIR/$p.err" &
  done
  # Sample once every connection is open (the nodes count them in /metrics).
  open=0
  for _ in $(seq 240); do
    open=0
    for addr in "${NODE_ADDRS[@]}"; do
      n=$(curl -s "http://$addr/metrics" | awk '/^hearth_connections /{print $2}')
      open=$((open + ${n:-0}))
    done
    [ "$open" -ge 95000 ] && break
    sleep 0.5
  done
  sleep 2
  rss=0
  for pid in "${NODE_PIDS[@]}"; do rss=$((rss + $(awk '/VmRSS/{print $2}' "/proc/$pid/status"))); done
  redis_before=$(redis-cli -p "$REDIS_PORT" info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{print s}')
  sleep 5
  redis_after=$(redis-cli -p "$REDIS_PORT" info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{print s}')
  redis_memory=$(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/{print $2}' | tr -d '\r')
  redis_ops=$(redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^instantaneous_ops_per_sec:/{print $2}' | tr -d '\r')
  wait_all=0
  for job in $(jobs -p); do
    case " ${NODE_PIDS[*]} $REDIS_PID $POSTGRES_PID " in *" $job "*) ;; *) wait "$job" || wait_all=1 ;; esac
  done
  cat "$SCALE_DIR"/*.err >&2 || true
  python3 - "$SCALE_DIR" "$open" "$base_rss" "$rss" "$redis_before" "$redis_after" "$redis_memory" "$redis_ops" >>"$RESULTS" <<'PY'
import glob, json, sys
d, open_, base, rss, rb, ra, mem, ops = sys.argv[1:]
rows = [json.loads(l) for f in sorted(glob.glob(d + "/*.json")) for l in open(f) if l.startswith("{")]
conns = sum(r["connections"] for r in rows)
print(json.dumps({
    "system": "hearth 5 nodes", "scenario": "cluster_scale", "nodes": 5,
    "connections": conns, "open_at_sample": int(open_),
    "still_open": sum(r["still_open"] for r in rows),
    "connects_per_s": sum(r["connects_per_s"] for r in rows),
    "rss_per_conn_bytes": (int(rss) - int(base)) * 1024 // max(conns, 1),
    "presence_rooms_checked": sum(r.get("presence_rooms_checked") or 0 for r in rows),
    "presence_rooms_correct": sum(r.get("presence_rooms_correct") or 0 for r in rows),
    "redis_cpu_percent": (float(ra) - float(rb)) / 5 * 100,
    "redis_used_memory_bytes": int(mem), "redis_ops_per_s": int(ops),
    "deliveries_per_s": None, "p50_ms": None, "p99_ms": None, "p999_ms": None, "cpu_us_per_delivery": None,
}))
PY
  rm -rf "$SCALE_DIR"
  stop_cluster
fi

say "browser client: first visit as served, time to first byte, hydration (loopback, slow 4G)"
start hearth
(cd end2end && node bench-browser.mjs "http://127.0.0.1:$PORT/") >>"$RESULTS" \
  || echo "  (browser figures did not complete)" >&2
stop

mkdir -p bench/results
python3 - "$RESULTS" bench/results/latest.json "$QUICK" <<'PY'
import json, platform, subprocess, sys, time
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip().startswith("{")]
quick = sys.argv[3] == "1"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
doc = {
    "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "mode": "quick" if quick else "full",
    "machine": {"cpu": cpu, "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
                "kernel": platform.release()},
    "results": rows,
}
json.dump(doc, open(sys.argv[2], "w"), indent=2)

def f(value, digits=2):
    return "-" if value is None else (f"{value:,.0f}" if digits == 0 else f"{value:,.{digits}f}")

print("\nDurable sends (50 connections, open loop; latency to the acknowledgement)")
print(f"{'system':22} {'offered/s':>10} {'acked/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9':>8} {'unacked':>8} {'µs/ack':>8}")
for r in rows:
    if r["scenario"] == "durable_sends":
        print(f"{r['system']:22} {f(r['offered_per_s'],0):>10} {f(r['acked_per_s'],0):>10} {f(r['p50_ms']):>8} {f(r['p99_ms']):>8} {f(r['p999_ms']):>8} {r['unacked']:>8} {f(r['cpu_us_per_delivery'],1):>8}")

print("\nHistory pages (50 messages, at random points of one channel; one keep-alive connection)")
for r in rows:
    if r["scenario"] == "history_page":
        print(f"{r['system']:22} {r['messages_in_channel']:>10,} messages  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  p99.9 {r['p999_ms']} ms")

print("\nFan-out (rooms of members, one publisher per room; latency to the last recipient)")
print(f"{'system':16} {'conns':>6} {'offered/s':>10} {'delivered/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'p99.9':>8} {'missing':>8} {'µs/deliv':>9} {'KB/conn':>8}")
for r in rows:
    if r["scenario"] == "fanout":
        print(f"{r['system']:16} {r['connections']:>6} {f(r['offered_deliveries_per_s'],0):>10} {f(r['deliveries_per_s'],0):>12} {f(r['p50_ms']):>8} {f(r['p99_ms']):>8} {f(r['p999_ms']):>8} {r['incomplete_messages']:>8} {f(r['cpu_us_per_delivery'],1):>9} {f((r['rss_per_conn_bytes'] or 0)/1024,1):>8}")

print("\nIdle connections and connect storm")
print(f"{'system':16} {'conns':>7} {'open':>7} {'connects/s':>11} {'µs/connect':>11} {'KiB/conn':>9} {'idle CPU %':>11}")
for r in rows:
    if r["scenario"] == "idle":
        print(f"{r['system']:16} {r['connections']:>7} {r['still_open']:>7} {f(r['connects_per_s'],0):>11} {f(r.get('cpu_us_per_connect'),0):>11} {f((r['rss_per_conn_bytes'] or 0)/1024,2):>9} {f(r['idle_cpu_percent']):>11}")

for r in rows:
    if r["scenario"] == "cluster_scale":
        print(f"\nCluster: {r['nodes']} nodes on PostgreSQL + Redis held {r['connections']:,} connections "
              f"({r['still_open']:,} still open at the end; {f(r['connects_per_s'],0)} connects/s); "
              f"{f(r['rss_per_conn_bytes']/1024,2)} KiB per connection; presence correct in "
              f"{r['presence_rooms_correct']} of {r['presence_rooms_checked']} rooms checked; Redis "
              f"{f(r['redis_cpu_percent'],1)} % CPU, {f(r['redis_used_memory_bytes']/1048576,1)} MiB, "
              f"{r['redis_ops_per_s']:,} ops/s")

for r in rows:
    if r["scenario"] == "browser":
        print(f"\nFirst visit: {r['first_visit_bytes']/1000:.1f} KB as served (budget 165 KB), "
              f"of which the client {r['client_bytes']/1000:.1f} KB (WASM+JS, brotli); "
              f"SSR first byte {r['ssr_ttfb_ms']} ms; name prompt usable after "
              f"{r['hydrated_interactive_ms']} ms on loopback, {r['slow_4g_interactive_ms']} ms on slow 4G")

# Highest delivered rate whose p99 stays within the bound, with nothing missing.
def best(system, bound):
    ok = [r["deliveries_per_s"] for r in rows if r["scenario"] == "fanout" and r["system"] == system
          and r["connections"] == 1000 and r["p99_ms"] <= bound and r["incomplete_messages"] == 0
          and r["deliveries_per_s"] > 0]
    return max(ok) if ok else None

hearth = best("hearth", 5)
print(f"\nHighest fan-out rate with p99 <= 5 ms and nothing missing: hearth {f(hearth,0)}/s")
for peer, bound in (("bare-rust", 5), ("socketio-node", 5), ("flask-socketio", 50)):
    other = best(peer, bound)
    if other:
        ratio = f"{hearth / other:.2f}x" if hearth else "-"
        print(f"  {peer} (p99 <= {bound} ms): {f(other,0)}/s; hearth / {peer} = {ratio}")
if not any(r["scenario"] == "fanout" and r["system"] == "hearth" and r["deliveries_per_s"] > 0 for r in rows):
    print("no fan-out figures for hearth", file=sys.stderr)
    sys.exit(1)
PY
./target/release/loadgen chart --input bench/results/latest.json --output bench/results/fanout.svg
