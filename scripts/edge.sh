#!/usr/bin/env bash
# The edge toolchain and build, with nothing fetched from outside the package registries.
#   scripts/edge.sh install   installs worker-build, wasm-bindgen-cli (matching Cargo.lock) and
#                             the npm tools (wrangler, binaryen) unless the right versions are there
#   scripts/edge.sh build     builds the Worker into build/worker (wrangler's [build] runs this)
#   scripts/edge.sh bundle    builds and bundles for deployment (wrangler deploy --dry-run) and
#                             prints the bundle's gzip size
set -euo pipefail
cd "$(dirname "$0")/.."
WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)

install() {
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  # Both tools only orchestrate or rewrite one module: built at opt-level 1 without LTO they take
  # about 5 minutes to install instead of 13 on 2 cores, and run as fast here (wasm-bindgen
  # 0.7 s instead of 0.5 s on the Worker's module, with identical output).
  local light=(env CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false)
  if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
    "${light[@]}" cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
  fi
  # Without --locked: the lockfile wasm-bindgen-cli ships names a crate version the registry lacks.
  # Only the wasm-bindgen binary, and no TLS stack (only its test runner downloads anything).
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    "${light[@]}" cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" \
      --no-default-features --bin wasm-bindgen
  fi
  if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

build() {
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  # worker-build fetches wasm-bindgen and wasm-opt from outside the registries unless told where
  # they are; both come from registries here.
  export WASM_BINDGEN_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen"
  export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
  # The workspace's wasm-release profile: size-oriented, no strip (wasm-bindgen needs it).
  (cd edge && worker-build --profile wasm-release)
  # The module's function-name section (565 KB, 143 KB gzipped, in December 2026) only names
  # functions in stack traces: the Worker ships without it (traces then show wasm-function[N];
  # a local build keeps names with MCPGW_EDGE_NAMES=1).
  if [ "${MCPGW_EDGE_NAMES:-0}" != 1 ]; then
    "$WASM_OPT_BIN" edge/build/index_bg.wasm --strip-debug --strip-producers -o edge/build/index_bg.wasm
  fi
}

bundle() {
  build
  local out=target/edge-bundle
  rm -rf "$out"
  WRANGLER_SEND_METRICS=false node_modules/.bin/node node_modules/.bin/wrangler deploy --dry-run --outdir "$out" >/dev/null
  # What deploys: the JS shim and the wasm module (not the source map).
  local raw=0 gz=0
  for f in "$out"/*.js "$out"/*.wasm; do
    [ -f "$f" ] || continue
    raw=$((raw + $(wc -c < "$f")))
    gz=$((gz + $(gzip -9 -c "$f" | wc -c)))
  done
  # 1.5 MiB: the Workers limit for a paid plan is larger, but a bigger module starts slower.
  echo "edge bundle: $raw bytes, $gz bytes gzipped (limit 1572864)"
  [ "$gz" -le 1572864 ] || { echo "edge bundle over 1.5 MiB gzipped" >&2; exit 1; }
}

case "${1:-}" in
  install) install ;;
  build) build ;;
  bundle) install && bundle ;;
  *) echo "usage: $0 install|build|bundle" >&2; exit 2 ;;
esac
