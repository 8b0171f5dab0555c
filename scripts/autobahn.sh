#!/usr/bin/env bash
# WebSocket conformance: Autobahn|Testsuite's fuzzingclient against `wsecho`, an echo
# server on Hearth's own WebSocket layer (socket, reader, frame). Runs sections 1-7,
# 9 and 10, and fails on any case that is not OK (or INFORMATIONAL), except the
# binary cases, which Hearth refuses with 1003 by design: those are listed.
#
#   ./scripts/autobahn.sh            # about 10 minutes; the report is in target/autobahn/
#
# The suite needs Python 2.7 (PyPI `autobahntestsuite`), which pyenv provides here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HEARTH_ROOT"

PY2="${AUTOBAHN_PYTHON_VERSION:-2.7.18}"
WSTEST="$HOME/.local/bin/wstest"
if [ ! -x "$WSTEST" ]; then
  say "installing autobahntestsuite for Python $PY2"
  PYENV_VERSION="$PY2" python -m pip install --user --quiet autobahntestsuite
fi

say "building the echo server"
cargo build --release --features loadgen --bin wsecho

OUT="$HEARTH_ROOT/target/autobahn"
rm -rf "$OUT" && mkdir -p "$OUT"
PORT="${AUTOBAHN_PORT:-9001}"
./target/release/wsecho "127.0.0.1:$PORT" >"$OUT/wsecho.log" 2>&1 &
ECHO_PID=$!
trap 'kill $ECHO_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "listening" "$OUT/wsecho.log" && break
  sleep 0.1
done

cat >"$OUT/spec.json" <<EOF
{
  "outdir": "$OUT/reports",
  "servers": [{"agent": "hearth", "url": "ws://127.0.0.1:$PORT"}],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF

say "running the fuzzing client (sections 1-7, 9, 10)"
(cd "$OUT" && PYENV_VERSION="$PY2" "$WSTEST" -m fuzzingclient -s spec.json >"$OUT/wstest.log" 2>&1)

python3 - "$OUT/reports/index.json" <<'EOF'
import json, sys
from collections import Counter

results = json.load(open(sys.argv[1]))["hearth"]
def order(case):
    return [int(part) for part in case.split(".")]
passed, binary, failed = Counter(), [], []
for case in sorted(results, key=order):
    result = results[case]
    behavior, close = result["behavior"], result.get("remoteCloseCode")
    if behavior in ("OK", "INFORMATIONAL"):
        passed[behavior] += 1
    elif close == 1003:
        binary.append(case)
    else:
        failed.append("%s: %s (close %s, %s)" % (case, behavior, close, result["behaviorClose"]))
print("Autobahn|Testsuite, %d cases: %d OK, %d INFORMATIONAL, %d binary refused with 1003, %d failed"
      % (len(results), passed["OK"], passed["INFORMATIONAL"], len(binary), len(failed)))
if binary:
    print("binary, refused by design: " + ", ".join(binary))
for line in failed:
    print("FAILED " + line)
sys.exit(1 if failed else 0)
EOF
