#!/usr/bin/env bash
# Runs Hearth's benchmarks on this machine and prints a table; writes
# bench/results/latest.json. `--quick` finishes in well under two minutes (CI smoke).
#
# Method: the server is pinned to core 0 and the load generator to core 1, so the
# figures are per server core. Every run is bounded in time and talks to loopback only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HEARTH_ROOT"

QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
if [ "$QUICK" = 1 ]; then
  SECONDS_PER_STEP=3; RATES=(5000 20000); CONFIGS=("sqlite full" "memory full")
else
  SECONDS_PER_STEP=10; RATES=(5000 10000 20000 40000 60000); CONFIGS=("sqlite full" "sqlite normal" "memory full")
fi

say "building the server and the load generator (release)"
cargo build --release --features loadgen --bin hearth --bin loadgen
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

PORT=3400
OUT="bench/results/latest.json"
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT

run_step() { # store durability rate
  local data; data="$(mktemp -d)"
  HEARTH_CONFIG=/nonexistent LEPTOS_SITE_ADDR="127.0.0.1:$PORT" HEARTH_DATA_DIR="$data" \
    HEARTH_STORE="$1" HEARTH_DURABILITY="$2" RUST_LOG=warn \
    HEARTH_SEND_RATE=1000000 HEARTH_SEND_BURST=1000000 HEARTH_CLAIMS_PER_MINUTE=1000000 \
    HEARTH_MAX_CONNS_PER_IP=100000 \
    taskset -c 0 ./target/release/hearth >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  local label="hearth ($1"; [ "$1" = sqlite ] && label="$label, synchronous=$2"; label="$label)"
  taskset -c 1 ./target/release/loadgen acks --addr "127.0.0.1:$PORT" --server-pid "$pid" \
    --clients 50 --rate "$3" --seconds "$SECONDS_PER_STEP" --label "$label" >>"$RESULTS" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}

for config in "${CONFIGS[@]}"; do
  for rate in "${RATES[@]}"; do
    say "durable sends: $config at $rate/s"
    run_step $config "$rate"
  done
done

python3 - "$RESULTS" "$OUT" <<'PY'
import json, platform, subprocess, sys, time
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
doc = {
    "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"cpu": cpu, "cores": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
                "kernel": platform.release()},
    "results": rows,
}
json.dump(doc, open(sys.argv[2], "w"), indent=2)
print(f"\n{'system':34} {'offered/s':>10} {'acked/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'unacked':>7} {'cpu µs/ack':>10}")
for r in rows:
    cpu_us = r.get("cpu_us_per_delivery")
    print(f"{r['system']:34} {r['offered_per_s']:>10.0f} {r['acked_per_s']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['p999_ms']:>9.2f} {r['unacked']:>7} {cpu_us if cpu_us is None else round(cpu_us, 1)!s:>10}")
    if r["unacked"] or r["acked"] == 0:
        print("  ^ not every send was acknowledged by the end (server saturated)", file=sys.stderr)
        bad = True
best = {}
for r in rows:
    if r["p99_ms"] <= 10 and r["unacked"] == 0:
        best[r["system"]] = max(best.get(r["system"], 0), r["acked_per_s"])
print("\nhighest acknowledged rate with p99 <= 10 ms and every send acknowledged:")
for system, rate in best.items():
    print(f"  {system}: {rate:.0f}/s")
print(f"\nwrote {sys.argv[2]}")
if any(r["acked"] == 0 for r in rows):
    sys.exit(1)
PY
