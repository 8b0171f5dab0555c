#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests against a real server, then the
# end-to-end tests in headless Chromium against the release build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HEARTH_ROOT"
say "unit and integration tests"
# `loadgen` is `ssr` plus the load generator, whose own unit tests (its WebSocket
# client among them) then run too.
cargo test --features loadgen
say "building the site for the end-to-end tests"
cargo leptos build --release --precompress
say "end-to-end tests (Chromium)"
(cd end2end && npx playwright test)
