#!/usr/bin/env bash
# Same-run A/B of two Hearth binaries: fan-out (10 rooms of 100 at 50,000 and
# 100,000 deliveries/s) and the connect storm (19,000 idle connections), the two
# alternating so that both see the same hours of this VM's noise.
#
#   ./scripts/bench-ab.sh BEFORE AFTER [PAIRS]     e.g. target/ab/hearth-before target/release/hearth
#
# Build BEFORE from an older commit first, e.g.:
#   git worktree add /tmp/before REV && (cd /tmp/before && cargo build --release --bin hearth --features ssr)
# Each server is pinned to core 0 and the load generator to core 1, as in bench.sh;
# traffic goes to loopback only, and every step is bounded in time.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
source "$(dirname "${BASH_SOURCE[0]}")/bench-env.sh"
cd "$HEARTH_ROOT"
BEFORE=$1 AFTER=$2 PAIRS=${3:-2}
cargo build --release --features loadgen --bin loadgen
PORT=3450
OUT="$(mktemp)"
SERVER_PID=""
DATA=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; [ -n "$DATA" ] && rm -rf "$DATA"; rm -f "$OUT"' EXIT

start() { # BINARY
  DATA="$(mktemp -d)"
  env HEARTH_CONFIG=/dev/null LEPTOS_SITE_ADDR="127.0.0.1:$PORT" LEPTOS_SITE_ROOT=target/site \
    HEARTH_DATA_DIR="$DATA" RUST_LOG=warn \
    "${BENCH_LIMITS[@]}" \
    taskset -c 0 "$1" >/dev/null 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 did not start" >&2; return 1
}

stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -rf "$DATA"; DATA=""
}

run() { # LABEL BINARY SCENARIO ARGS...
  local label=$1 binary=$2; shift 2
  start "$binary"
  taskset -c 1 ./target/release/loadgen "$@" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
    --label "$label" >>"$OUT" || echo "  ($label $1 did not complete)" >&2
  stop
}

for pair in $(seq 1 "$PAIRS"); do
  for side in before after; do
    binary=$BEFORE; [ "$side" = after ] && binary=$AFTER
    for rate in 500 1000; do
      say "pair $pair, $side: fan-out at $((rate * 100))/s"
      run "$side" "$binary" fanout --rooms 10 --members 100 --rate "$rate" --seconds 10
    done
    say "pair $pair, $side: connect storm, 19,000 connections"
    run "$side" "$binary" idle --rooms 190 --members 100 --sources 4 --concurrency 512 --seconds 10
  done
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def f(v, d=2):
    return "-" if v is None else f"{v:,.{d}f}"
print("\nFan-out, 10 rooms of 100")
print(f"{'binary':8} {'delivered/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'missing':>8} {'µs/deliv':>9}")
for r in rows:
    if r["scenario"] == "fanout":
        print(f"{r['system']:8} {f(r['deliveries_per_s'],0):>12} {f(r['p50_ms']):>8} {f(r['p99_ms']):>8} {r['incomplete_messages']:>8} {f(r['cpu_us_per_delivery']):>9}")
print("\nConnect storm and idle, 19,000 connections")
print(f"{'binary':8} {'connects/s':>11} {'µs/connect':>11} {'KiB/conn':>9} {'idle CPU %':>11}")
for r in rows:
    if r["scenario"] == "idle":
        print(f"{r['system']:8} {f(r['connects_per_s'],0):>11} {f(r.get('cpu_us_per_connect'),1):>11} {f((r['rss_per_conn_bytes'] or 0)/1024):>9} {f(r['idle_cpu_percent']):>11}")
PY
