#!/usr/bin/env bash
# Installs what building and testing Hearth needs on a Debian machine, skipping
# whatever is already there, and puts the tools on PATH. Run it, or source it from
# the other scripts (they do).
set -euo pipefail

HEARTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HEARTH_TOOLS="${HEARTH_TOOLS:-$HOME/.cache/hearth-tools}"
CARGO_LEPTOS_VERSION=0.3.11
BINARYEN_VERSION=132.0.0

say() { printf '\033[1;33m==> %s\033[0m\n' "$*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_debian_packages() {
  local missing=()
  for pkg in build-essential pkg-config curl ca-certificates git python3 util-linux nodejs npm chromium redis-server postgresql; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  # A machine may already have node and npm from elsewhere.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
  fi
  local wanted=()
  for pkg in "${missing[@]}"; do [ -n "$pkg" ] && wanted+=("$pkg"); done
  if [ "${#wanted[@]}" -gt 0 ]; then
    say "installing Debian packages: ${wanted[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${wanted[@]}"
  fi
}

install_rust() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v rustup >/dev/null; then
    say "installing rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
  fi
  local channel
  channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$HEARTH_ROOT/rust-toolchain.toml")"
  if ! rustup run "$channel" rustc --print target-list >/dev/null 2>&1 \
     || ! rustup target list --installed --toolchain "$channel" | grep -q wasm32-unknown-unknown \
     || ! rustup component list --installed --toolchain "$channel" | grep -q clippy; then
    say "installing Rust $channel with the wasm target"
    rustup toolchain install "$channel" --profile minimal \
      --component rustfmt --component clippy --target wasm32-unknown-unknown
  fi
}

install_cargo_tools() {
  if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 10 minutes, once)"
    (cd "$HEARTH_ROOT" && cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked)
  fi
  # The CLI must match the wasm-bindgen library exactly.
  local wbg
  wbg="$(grep -A1 '^name = "wasm-bindgen"$' "$HEARTH_ROOT/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$wbg"; then
    say "installing wasm-bindgen-cli $wbg"
    (cd "$HEARTH_ROOT" && cargo install wasm-bindgen-cli --version "$wbg" --force)
  fi
}

install_node_tools() {
  # wasm-opt from npm: Debian's binaryen is too old and breaks hydration.
  mkdir -p "$HEARTH_TOOLS"
  if ! "$HEARTH_TOOLS/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "${BINARYEN_VERSION%%.*}"; then
    say "installing wasm-opt (binaryen $BINARYEN_VERSION)"
    npm install --prefix "$HEARTH_TOOLS" --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION"
  fi
  export PATH="$HEARTH_TOOLS/node_modules/.bin:$PATH"
  # Playwright drives Debian's Chromium; it must not try to download its own.
  if [ ! -d "$HEARTH_ROOT/end2end/node_modules/@playwright/test" ] \
     || [ "$HEARTH_ROOT/end2end/package-lock.json" -nt "$HEARTH_ROOT/end2end/node_modules/.package-lock.json" ]; then
    say "installing end-to-end test packages"
    (cd "$HEARTH_ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
}

install_debian_packages
install_rust
install_cargo_tools
install_node_tools
