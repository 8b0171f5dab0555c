#!/usr/bin/env bash
# Builds Hearth and runs it with the embedded store on http://127.0.0.1:3000.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HEARTH_ROOT"
say "building (the first build takes a few minutes)"
cargo leptos build --release --precompress
say "Hearth is at http://127.0.0.1:3000 (Ctrl+C stops it)"
exec ./target/release/hearth "$@"
